//! chronik-sql behind the API's [`SqlService`] seam (the API crate does not build DataFusion).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chronik_api::{SqlAnswer, SqlColumn, SqlFailure, SqlFormat, SqlRequest, SqlService, SqlTable};
use chronik_meta::MetadataStore;
use chronik_sql::{Format, Placement, Query, SqlEngine, SqlError};

#[derive(Debug)]
pub struct Sql(pub Arc<SqlEngine>);

/// Which columnar topics have partitions with no replica on this broker, from metadata.
#[derive(Debug)]
pub struct MetadataPlacement {
    pub meta: Arc<dyn MetadataStore>,
    pub node_id: i32,
}

impl Placement for MetadataPlacement {
    fn node_id(&self) -> i32 {
        self.node_id
    }

    fn unhosted(&self) -> Vec<(String, Vec<(i32, i32)>)> {
        let state = self.meta.state();
        state
            .topics
            .values()
            .filter(|t| t.config().columnar_enabled)
            .filter_map(|t| {
                let missing: Vec<(i32, i32)> = t
                    .partitions_not_on(self.node_id)
                    .into_iter()
                    .map(|p| (p, t.partitions[p as usize].leader))
                    .collect();
                (!missing.is_empty()).then(|| (t.name.clone(), missing))
            })
            .collect()
    }
}

#[async_trait]
impl SqlService for Sql {
    async fn query(&self, request: SqlRequest) -> Result<SqlAnswer, SqlFailure> {
        let query = Query {
            sql: request.query,
            limit: request.limit,
            timeout: request.timeout_ms.map(Duration::from_millis),
            format: match request.format {
                SqlFormat::Json => Format::Json,
                SqlFormat::Ndjson => Format::Ndjson,
                SqlFormat::Arrow => Format::Arrow,
            },
        };
        match self.0.query(query).await {
            Ok(answer) => Ok(SqlAnswer {
                content_type: answer.content_type,
                body: answer.body,
            }),
            Err(SqlError::BadQuery(reason)) => Err(SqlFailure::BadQuery(reason)),
            Err(SqlError::UnknownTable(table)) => Err(SqlFailure::UnknownTable(table)),
            Err(SqlError::Timeout(ms)) => Err(SqlFailure::Timeout(ms)),
            Err(SqlError::NotHosted(reason)) => Err(SqlFailure::NotHosted(reason)),
            Err(e) => Err(SqlFailure::Internal(e.to_string())),
        }
    }

    fn tables(&self) -> Vec<SqlTable> {
        self.0
            .tables()
            .into_iter()
            .map(|t| SqlTable {
                name: t.name,
                topic: t.topic,
                kind: t.kind.to_string(),
                columns: t
                    .columns
                    .into_iter()
                    .map(|c| SqlColumn {
                        name: c.name,
                        data_type: c.data_type,
                        nullable: c.nullable,
                    })
                    .collect(),
            })
            .collect()
    }

    fn metric_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        chronik_sql::metrics().registry.gather()
    }
}
