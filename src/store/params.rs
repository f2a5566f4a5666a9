//! Service parameters per node (SPEC section 3). A missing row is the
//! catalogue's default.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use crate::domain::params::ServiceParams;
use crate::error::AppResult;

/// The stored values of one node, by parameter key.
pub async fn stored_values(
    conn: &mut SqliteConnection,
    node: &str,
) -> AppResult<HashMap<String, String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM service_parameters WHERE node = ?1")
            .bind(node)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The typed parameters of one node; its name is the default Notification Host.
pub async fn load(conn: &mut SqliteConnection, node: &str) -> AppResult<ServiceParams> {
    let values = stored_values(conn, node).await?;
    Ok(ServiceParams::from_values(&values, node))
}
