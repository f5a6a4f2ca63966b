//! Running SQL: one DataFusion context per query over every columnar topic's tables, with the
//! row limit and the timeout enforced, and the answer rendered as JSON, NDJSON or an Arrow IPC
//! stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::metrics::metrics;
use crate::schema::{self, KEY, OFFSET, PARTITION, TOMBSTONE};
use crate::store::{Store, Topic};
use crate::table::{Part, TopicTable};
use crate::SqlError;

/// Where the stored form of each topic (with `_tombstone`) is registered; `T_latest` is a view
/// over it.
const INTERNAL_SCHEMA: &str = "chronik_internal";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Arrow,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    pub limit: Option<usize>,
    pub timeout: Option<Duration>,
    pub format: Format,
}

/// A rendered answer.
#[derive(Debug)]
pub struct Answer {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// One table and its columns (name, type).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableInfo {
    pub name: String,
    pub topic: String,
    /// `all`, `hot`, `cold` or `latest`.
    pub kind: &'static str,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// Table name of a topic: non-alphanumerics become `_`.
pub fn table_name(topic: &str) -> String {
    topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Where a broker stands in the cluster: which columnar topics have partitions it holds no
/// replica of (and therefore no columnar data for).
pub trait Placement: Send + Sync + std::fmt::Debug {
    /// This broker's node id, for messages.
    fn node_id(&self) -> i32;
    /// Columnar topics with partitions not hosted here, each with (partition, leader) pairs.
    fn unhosted(&self) -> Vec<(String, Vec<(i32, i32)>)>;
}

/// The SQL engine over a [`Store`].
#[derive(Debug)]
pub struct SqlEngine {
    store: Arc<Store>,
    runtime: QueryRuntime,
    placement: std::sync::OnceLock<Arc<dyn Placement>>,
}

/// The threads queries run on. DataFusion operators can compute for a long time inside one
/// poll; on their own runtime they cannot starve the Kafka listener, the HTTP API or the index
/// pipeline, and a timed-out query is answered at its deadline while its task winds down.
#[derive(Debug)]
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn new(threads: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("chronik-sql")
            .enable_all()
            .build()
            .expect("the SQL query runtime starts");
        QueryRuntime(Some(runtime))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the engine may be dropped inside the server's runtime.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl SqlEngine {
    pub fn new(store: Arc<Store>) -> Self {
        let threads = store.config.query_threads;
        SqlEngine {
            store,
            runtime: QueryRuntime::new(threads),
            placement: std::sync::OnceLock::new(),
        }
    }

    /// In a cluster: refuse queries over topics with partitions this broker does not host.
    /// Set once, at start-up; later calls are ignored.
    pub fn set_placement(&self, placement: Arc<dyn Placement>) {
        let _ = self.placement.set(placement);
    }

    fn detached(&self) -> DetachedEngine {
        DetachedEngine {
            store: self.store.clone(),
            placement: self.placement.get().cloned(),
        }
    }

    /// Every table with its schema, sorted by name.
    pub fn tables(&self) -> Vec<TableInfo> {
        let mut out = Vec::new();
        for topic in self.store.topics() {
            let name = table_name(&topic.name);
            let shown = schema::visible(&topic.schema.read().stored_arrow());
            let columns: Vec<ColumnInfo> = shown
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    data_type: schema::type_name(f.data_type()),
                    nullable: f.is_nullable(),
                })
                .collect();
            for (suffix, kind) in [
                ("", "all"),
                ("_hot", "hot"),
                ("_cold", "cold"),
                ("_latest", "latest"),
            ] {
                out.push(TableInfo {
                    name: format!("{name}{suffix}"),
                    topic: topic.name.clone(),
                    kind,
                    columns: columns.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Run a query and render it in the requested format.
    pub async fn query(&self, q: Query) -> Result<Answer, SqlError> {
        let started = Instant::now();
        let result = self.execute(&q.sql, q.limit, q.timeout).await?;
        let took_ms = started.elapsed().as_millis() as u64;
        match q.format {
            Format::Json => render_json(&result, took_ms),
            Format::Ndjson => render_ndjson(&result),
            Format::Arrow => render_arrow(&result),
        }
    }

    /// Run a query, keeping at most `limit` rows; past `timeout` the whole plan is dropped
    /// (every DataFusion task of the query is cancelled with it).
    pub async fn execute(
        &self,
        sql: &str,
        limit: Option<usize>,
        timeout: Option<Duration>,
    ) -> Result<QueryResult, SqlError> {
        let started = Instant::now();
        let timeout = timeout.unwrap_or(self.store.config.default_timeout);
        let limit = limit.unwrap_or(self.store.config.default_limit);
        // The query runs on its own task so the answer leaves at the timeout even while an
        // operator is busy inside one poll; aborting the task drops the whole plan.
        let engine = self.detached();
        let sql = sql.to_owned();
        let work = async move {
            let ctx = engine.context().await?;
            engine.check_hosted(&ctx, &sql)?;
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx
                .sql_with_options(&sql, options)
                .await
                .map_err(classify)?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await.map_err(classify)?;
            let mut out = QueryResult {
                schema,
                batches: Vec::new(),
                rows: 0,
                truncated: false,
            };
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(classify)?;
                if out.rows + batch.num_rows() > limit {
                    let keep = limit - out.rows;
                    if keep > 0 {
                        out.batches.push(batch.slice(0, keep));
                    }
                    out.rows = limit;
                    out.truncated = true;
                    break;
                }
                out.rows += batch.num_rows();
                out.batches.push(batch);
            }
            Ok::<_, SqlError>(out)
        };
        let mut task = self.runtime.handle().spawn(work);
        let result = match tokio::time::timeout(timeout, &mut task).await {
            Ok(joined) => {
                Ok(joined.map_err(|e| SqlError::Internal(format!("query task failed: {e}")))?)
            }
            Err(elapsed) => {
                task.abort();
                Err(elapsed)
            }
        };
        let outcome = match &result {
            Err(_) => "timeout",
            Ok(Err(SqlError::BadQuery(_) | SqlError::UnknownTable(_))) => "bad_query",
            Ok(Err(_)) => "error",
            Ok(Ok(_)) => "ok",
        };
        metrics().queries.with_label_values(&[outcome]).inc();
        metrics()
            .query_seconds
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|_| SqlError::Timeout(timeout.as_millis() as u64))?
    }
}

/// What a query task needs of the engine, owned so the task can live on the query runtime.
struct DetachedEngine {
    store: Arc<Store>,
    placement: Option<Arc<dyn Placement>>,
}

/// Whether `table` is one of a topic's tables: `T`, `T_hot`, `T_cold` or `T_latest` where `T` is
/// the topic's table name.
fn is_table_of(table: &str, topic: &str) -> bool {
    let name = table_name(topic);
    table == name
        || ["_hot", "_cold", "_latest"]
            .iter()
            .any(|suffix| table.strip_suffix(suffix) == Some(name.as_str()))
}

impl DetachedEngine {
    /// Refuse a query that reads a topic with partitions this broker holds no replica of.
    /// A statement that does not parse is left to planning, which reports it.
    fn check_hosted(&self, ctx: &SessionContext, sql: &str) -> Result<(), SqlError> {
        let Some(placement) = &self.placement else {
            return Ok(());
        };
        let unhosted = placement.unhosted();
        if unhosted.is_empty() {
            return Ok(());
        }
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let Ok(statement) = state.sql_to_statement(sql, &dialect) else {
            return Ok(());
        };
        let Ok(tables) = state.resolve_table_references(&statement) else {
            return Ok(());
        };
        for table in tables {
            let Some((topic, missing)) =
                unhosted.iter().find(|(t, _)| is_table_of(table.table(), t))
            else {
                continue;
            };
            let list = |f: fn(&(i32, i32)) -> i32| {
                let mut v: Vec<i32> = missing.iter().map(f).collect();
                v.sort_unstable();
                v.dedup();
                v.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
            };
            return Err(SqlError::NotHosted(format!(
                "topic '{topic}' has partitions ({}) with no replica on broker {}, and SQL \
                 queries do not fan out across brokers yet; query a broker that hosts every \
                 partition (their leaders are brokers {}), or give the topic a replica on every \
                 broker",
                list(|p| p.0),
                placement.node_id(),
                list(|p| p.1),
            )));
        }
        Ok(())
    }

    async fn context(&self) -> Result<SessionContext, SqlError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            // JSON field names are case-sensitive, and so are topic names.
            .set_bool("datafusion.sql_parser.enable_ident_normalization", false)
            .set_bool("datafusion.execution.parquet.pruning", true)
            .set_bool("datafusion.execution.collect_statistics", true);
        let ctx = SessionContext::new_with_config(config);
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| SqlError::Internal("default catalog missing".into()))?;
        catalog
            .register_schema(INTERNAL_SCHEMA, Arc::new(MemorySchemaProvider::new()))
            .map_err(internal)?;
        for topic in self.store.topics() {
            self.register(&ctx, &topic).await?;
        }
        Ok(ctx)
    }

    async fn register(&self, ctx: &SessionContext, topic: &Arc<Topic>) -> Result<(), SqlError> {
        let name = table_name(&topic.name);
        for (suffix, part) in [("", Part::All), ("_hot", Part::Hot), ("_cold", Part::Cold)] {
            ctx.register_table(
                format!("{name}{suffix}").as_str(),
                Arc::new(TopicTable::new(topic.clone(), part, false)),
            )
            .map_err(internal)?;
        }
        let stored = TopicTable::new(topic.clone(), Part::All, true);
        let columns: Vec<String> = stored
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != TOMBSTONE)
            .map(|n| quote(&n))
            .collect();
        let internal_table = format!("{INTERNAL_SCHEMA}.{}", quote(&name));
        ctx.register_table(
            datafusion::common::TableReference::partial(INTERNAL_SCHEMA, name.as_str()),
            Arc::new(stored),
        )
        .map_err(internal)?;
        // Latest value per key; records of one key live in one partition, in offset order.
        let view = format!(
            "CREATE VIEW {latest} AS SELECT {cols} FROM (SELECT *, row_number() OVER \
             (PARTITION BY {p}, {k} ORDER BY {o} DESC) AS __chronik_rank FROM {internal} \
             WHERE {k} IS NOT NULL) WHERE __chronik_rank = 1 AND NOT {t}",
            internal = internal_table,
            latest = quote(&format!("{name}_latest")),
            cols = columns.join(", "),
            p = quote(PARTITION),
            k = quote(KEY),
            o = quote(OFFSET),
            t = quote(TOMBSTONE),
        );
        ctx.sql(&view).await.map_err(internal)?;
        Ok(())
    }
}

/// The rows of a query (at most its limit) and whether more were left out.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub truncated: bool,
}

fn internal(e: DataFusionError) -> SqlError {
    SqlError::Internal(e.to_string())
}

/// DataFusion's errors: a missing table is named, resource and internal failures are ours,
/// everything else (parse, plan, execution such as a failed cast) is the query's.
fn classify(e: DataFusionError) -> SqlError {
    let e = e.find_root().to_string();
    if let Some(at) = e.find("table '") {
        let rest = &e[at + "table '".len()..];
        if let Some(end) = rest.find("' not found") {
            let name = &rest[..end];
            let name = name.rsplit('.').next().unwrap_or(name);
            return SqlError::UnknownTable(name.to_string());
        }
    }
    let ours = [
        "Internal error",
        "Resources exhausted",
        "IO error",
        "Object Store error",
    ];
    if ours.iter().any(|p| e.starts_with(p)) {
        return SqlError::Internal(e);
    }
    SqlError::BadQuery(e)
}

fn column_infos(schema: &SchemaRef) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": schema::type_name(f.data_type())}))
        .collect()
}

fn render_json(result: &QueryResult, took_ms: u64) -> Result<Answer, SqlError> {
    let mut rows = Vec::with_capacity(result.rows);
    for batch in &result.batches {
        let cells = Cells::new(batch)?;
        for r in 0..batch.num_rows() {
            rows.push(Value::Array(cells.row(r)));
        }
    }
    let body = json!({
        "columns": column_infos(&result.schema),
        "rows": rows,
        "row_count": result.rows,
        "truncated": result.truncated,
        "took_ms": took_ms,
    });
    Ok(Answer {
        content_type: "application/json",
        body: serde_json::to_vec(&body).map_err(|e| SqlError::Internal(e.to_string()))?,
    })
}

fn render_ndjson(result: &QueryResult) -> Result<Answer, SqlError> {
    let schema = &result.schema;
    let mut body = Vec::new();
    for batch in &result.batches {
        let cells = Cells::new(batch)?;
        for r in 0..batch.num_rows() {
            let object: Map<String, Value> = schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .zip(cells.row(r))
                .collect();
            serde_json::to_writer(&mut body, &Value::Object(object))
                .map_err(|e| SqlError::Internal(e.to_string()))?;
            body.push(b'\n');
        }
    }
    Ok(Answer {
        content_type: "application/x-ndjson",
        body,
    })
}

fn render_arrow(result: &QueryResult) -> Result<Answer, SqlError> {
    let mut writer = StreamWriter::try_new(Vec::new(), &result.schema)
        .map_err(|e| SqlError::Internal(e.to_string()))?;
    for b in &result.batches {
        writer
            .write(b)
            .map_err(|e| SqlError::Internal(e.to_string()))?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| SqlError::Internal(e.to_string()))?;
    Ok(Answer {
        content_type: "application/vnd.apache.arrow.stream",
        body,
    })
}

/// JSON values of a batch's cells: numbers, booleans and strings as themselves, everything else
/// (timestamps, dates, decimals, lists) in Arrow's display form.
struct Cells<'a> {
    columns: Vec<(&'a ArrayRef, ArrayFormatter<'a>)>,
}

impl<'a> Cells<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self, SqlError> {
        static OPTIONS: std::sync::LazyLock<FormatOptions<'static>> =
            std::sync::LazyLock::new(FormatOptions::default);
        let columns = batch
            .columns()
            .iter()
            .map(|c| {
                ArrayFormatter::try_new(c.as_ref(), &OPTIONS)
                    .map(|f| (c, f))
                    .map_err(|e| SqlError::Internal(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Cells { columns })
    }

    fn row(&self, r: usize) -> Vec<Value> {
        self.columns.iter().map(|(c, f)| cell(c, f, r)).collect()
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn cell(c: &ArrayRef, f: &ArrayFormatter<'_>, r: usize) -> Value {
    if c.is_null(r) {
        return Value::Null;
    }
    match c.data_type() {
        DataType::Boolean => Value::Bool(c.as_boolean().value(r)),
        DataType::Int8 => json!(c.as_primitive::<Int8Type>().value(r)),
        DataType::Int16 => json!(c.as_primitive::<Int16Type>().value(r)),
        DataType::Int32 => json!(c.as_primitive::<Int32Type>().value(r)),
        DataType::Int64 => json!(c.as_primitive::<Int64Type>().value(r)),
        DataType::UInt8 => json!(c.as_primitive::<UInt8Type>().value(r)),
        DataType::UInt16 => json!(c.as_primitive::<UInt16Type>().value(r)),
        DataType::UInt32 => json!(c.as_primitive::<UInt32Type>().value(r)),
        DataType::UInt64 => json!(c.as_primitive::<UInt64Type>().value(r)),
        DataType::Float32 => float(f64::from(c.as_primitive::<Float32Type>().value(r))),
        DataType::Float64 => float(c.as_primitive::<Float64Type>().value(r)),
        DataType::Utf8 => Value::String(c.as_string::<i32>().value(r).to_string()),
        DataType::LargeUtf8 => Value::String(c.as_string::<i64>().value(r).to_string()),
        DataType::Utf8View => Value::String(c.as_string_view().value(r).to_string()),
        _ => Value::String(f.value(r).to_string()),
    }
}
