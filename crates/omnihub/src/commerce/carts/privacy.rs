//! Carts' part of privacy requests: the person's carts and their lines, in
//! an access export and deleted by an erasure. A cart line's stock hold is
//! not released here: holds expire on their own (minutes), like an
//! abandoned cart's.

use futures::future::BoxFuture;
use sqlx::AnyConnection;

use super::store;
use crate::platform::privacy::{self, Chunk, Page, Section, Step, Subject};
use crate::platform::storage::{StoreError, Tx};

pub const SECTION: Section = Section {
    name: "carts",
    page: carts_page,
};

pub const STEP: Step = Step {
    name: "carts",
    erase,
};

/// What a person's carts are keyed by: profile ids and anonymous ids.
pub fn owner_keys(subject: &Subject) -> Vec<String> {
    let mut keys = subject.customer_ids.clone();
    keys.extend(subject.values_of("anonymous_id").map(str::to_string));
    keys
}

fn carts_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    cursor: Option<String>,
    limit: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let keys = owner_keys(subject);
        let after = cursor.unwrap_or_default();
        let carts = store::cart_records(&mut *conn, &keys, &after, limit as i64).await?;
        let lines = store::line_records(&mut *conn, &privacy::ids_of(&carts)).await?;
        Ok(privacy::page_with_children(
            &carts, &lines, "cart_id", "lines", limit,
        ))
    })
}

fn erase<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    _: Option<String>,
    limit: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let deleted = store::delete_carts(tx.conn(), &owner_keys(subject), limit as i64).await?;
        Ok(Chunk {
            changed: deleted,
            next: (deleted > 0).then(String::new),
        })
    })
}

/// Retention of carts: deletes up to `limit` carts untouched since `before`
/// (µs) that no order was made from (an abandoned cart's lines, a guest's
/// merged cart); returns how many. Checked-out carts stay with their order.
pub fn prune<'t>(
    tx: &'t mut Tx,
    before: i64,
    limit: usize,
) -> BoxFuture<'t, Result<u64, StoreError>> {
    Box::pin(async move { store::delete_carts_before(tx.conn(), before, limit as i64).await })
}
