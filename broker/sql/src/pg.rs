//! The PostgreSQL wire protocol over the same tables as `/_sql`, so psql and BI tools query
//! topics directly.
//!
//! Owns the listener, the mapping of Arrow types to PostgreSQL types, the text encoding of
//! values, and the one place where [`SqlError`]s become SQLSTATE codes. Queries arrive through
//! the simple query protocol (what psql and most drivers in text mode use); the extended
//! protocol (prepared statements with parameters) answers "feature not supported" (0A000).
//! There is no authentication: like the Kafka listener of this build, the port is for trusted
//! networks, and it is off unless CHRONIK_PG_PORT is set.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{stream, Sink};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{QueryResult, SqlEngine, SqlError};

/// Settings of the PostgreSQL listener.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Most rows one query may return; a larger result is an error asking for a LIMIT rather
    /// than a silently shortened answer.
    pub max_rows: usize,
    /// Query timeout (statement_timeout in PostgreSQL terms).
    pub timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            max_rows: 1_000_000,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Accept PostgreSQL clients on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<SqlEngine>,
    config: PgConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let handlers = Arc::new(PgHandlers(Arc::new(PgSession { engine, config })));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %e, "postgres connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "postgres accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

struct PgHandlers(Arc<PgSession>);

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.0.clone()
    }
}

struct PgSession {
    engine: Arc<SqlEngine>,
    config: PgConfig,
}

impl NoopStartupHandler for PgSession {}

#[async_trait]
impl SimpleQueryHandler for PgSession {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = query.trim().trim_end_matches(';').trim();
        if sql.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        // One row past the cap tells a complete answer from a cut one.
        let result = self
            .engine
            .execute(
                sql,
                Some(self.config.max_rows.saturating_add(1)),
                Some(self.config.timeout),
            )
            .await
            .map_err(pg_error)?;
        if result.rows > self.config.max_rows {
            return Err(user_error(
                "54000",
                format!(
                    "the result has more than {} rows; add a LIMIT or narrow the query",
                    self.config.max_rows
                ),
            ));
        }
        Ok(vec![Response::Query(query_response(&result)?)])
    }
}

fn query_response(result: &QueryResult) -> PgWireResult<QueryResponse> {
    let fields: Vec<FieldInfo> = result
        .schema
        .fields()
        .iter()
        .map(|f| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                FieldFormat::Text,
            )
        })
        .collect();
    let fields = Arc::new(fields);
    let mut rows: Vec<PgWireResult<DataRow>> = Vec::with_capacity(result.rows);
    let mut encoder = DataRowEncoder::new(fields.clone());
    for batch in &result.batches {
        let columns = text_columns(batch)?;
        for row in 0..batch.num_rows() {
            for column in &columns {
                encoder.encode_field(&column[row])?;
            }
            rows.push(Ok(encoder.take_row()));
        }
    }
    Ok(QueryResponse::new(fields, stream::iter(rows)))
}

/// The PostgreSQL type a column of `data_type` is announced as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        // Everything else (lists, structs, intervals...) travels as its display text.
        _ => Type::TEXT,
    }
}

/// Every cell of `batch` in PostgreSQL's text format, column by column (None is SQL NULL).
pub fn text_columns(batch: &RecordBatch) -> PgWireResult<Vec<Vec<Option<String>>>> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    batch
        .columns()
        .iter()
        .map(|array| {
            let array = array.as_ref();
            if let DataType::Boolean = array.data_type() {
                let values = array.as_boolean();
                return Ok((0..array.len())
                    .map(|i| {
                        (!values.is_null(i)).then(|| if values.value(i) { "t" } else { "f" }.into())
                    })
                    .collect());
            }
            if let DataType::Binary | DataType::LargeBinary | DataType::BinaryView =
                array.data_type()
            {
                return Ok(binary_text(array));
            }
            let formatter = ArrayFormatter::try_new(array, &options)
                .map_err(|e| user_error("XX000", e.to_string()))?;
            Ok((0..array.len())
                .map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string()))
                .collect())
        })
        .collect()
}

/// bytea in the hex format (`\x0a1b`).
fn binary_text(array: &dyn Array) -> Vec<Option<String>> {
    let hex = |bytes: &[u8]| {
        let mut s = String::with_capacity(2 + bytes.len() * 2);
        s.push_str("\\x");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s
    };
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return None;
            }
            Some(match array.data_type() {
                DataType::LargeBinary => hex(array.as_binary::<i64>().value(i)),
                DataType::BinaryView => hex(array.as_binary_view().value(i)),
                _ => hex(array.as_binary::<i32>().value(i)),
            })
        })
        .collect()
}

/// The SQLSTATE of each query failure; the message is the same as over HTTP.
fn pg_error(e: SqlError) -> PgWireError {
    let code = match &e {
        SqlError::BadQuery(_) => "42000",
        SqlError::UnknownTable(_) => "42P01",
        SqlError::Timeout(_) => "57014",
        SqlError::NotHosted(_) => "0A000",
        SqlError::Io { .. } | SqlError::Parquet { .. } | SqlError::Internal(_) => "XX000",
    };
    user_error(code, e.to_string())
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    #[test]
    fn arrow_types_map_to_postgres_types() {
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::Float64), Type::FLOAT8);
        assert_eq!(pg_type(&DataType::Boolean), Type::BOOL);
        assert_eq!(pg_type(&DataType::Utf8), Type::TEXT);
        assert_eq!(pg_type(&DataType::Binary), Type::BYTEA);
        assert_eq!(
            pg_type(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            )),
            Type::TIMESTAMPTZ
        );
        assert_eq!(
            pg_type(&DataType::new_list(DataType::Int64, true)),
            Type::TEXT
        );
    }

    #[test]
    fn values_are_written_in_postgres_text_format() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("v", DataType::Binary, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(-7), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                Arc::new(StringArray::from(vec![Some("Oslo"), None])),
                Arc::new(BinaryArray::from(vec![Some(&[0x0a_u8, 0xff][..]), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_700_000_000_123_456), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let columns = text_columns(&batch).unwrap();
        let first: Vec<Option<&str>> = columns.iter().map(|c| c[0].as_deref()).collect();
        assert_eq!(
            first,
            vec![
                Some("-7"),
                Some("1.5"),
                Some("t"),
                Some("Oslo"),
                Some("\\x0aff"),
                Some("2023-11-14 22:13:20.123456+00:00"),
            ]
        );
        let second: Vec<Option<&str>> = columns.iter().map(|c| c[1].as_deref()).collect();
        assert_eq!(second, vec![None, None, Some("f"), None, None, None]);
    }

    #[test]
    fn failures_carry_their_sqlstate() {
        let code = |e: SqlError| match pg_error(e) {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(SqlError::BadQuery("x".into())), "42000");
        assert_eq!(code(SqlError::UnknownTable("t".into())), "42P01");
        assert_eq!(code(SqlError::Timeout(5)), "57014");
    }
}
