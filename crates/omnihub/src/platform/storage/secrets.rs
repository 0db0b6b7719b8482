//! The hub's own secrets (keys of keyed hashes), made on first use and kept
//! in the database, so every node, every restart and every backup shares them.

use sqlx::AnyConnection;

use super::StoreError;

/// The hub's secret named `name` (32 random bytes, made on first use and
/// kept in the database so every node and every backup shares it).
pub async fn hub_secret(conn: &mut AnyConnection, name: &str) -> Result<Vec<u8>, StoreError> {
    use rand::RngCore;
    use sqlx::Row;
    if let Some(row) = sqlx::query("SELECT secret FROM hub_secrets WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
    {
        let secret: String = row.try_get("secret")?;
        return hex::decode(secret)
            .map_err(|e| StoreError::Corrupt(format!("hub_secrets.{name}: {e}")));
    }
    let mut fresh = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut fresh);
    sqlx::query(
        "INSERT INTO hub_secrets (name, secret, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(hex::encode(fresh))
    .bind(crate::platform::time::to_micros(
        crate::platform::time::now(),
    ))
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT secret FROM hub_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    let secret: String = row.try_get("secret")?;
    hex::decode(secret).map_err(|e| StoreError::Corrupt(format!("hub_secrets.{name}: {e}")))
}
