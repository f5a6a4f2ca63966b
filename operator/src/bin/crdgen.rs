//! Prints the ChronikCluster CRD as YAML; `operator/generate.sh` writes it to crds/.

fn main() -> anyhow::Result<()> {
    print!("{}", chronik_operator::crd::crd_yaml()?);
    Ok(())
}
