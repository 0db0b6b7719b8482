//! Orders' part of privacy requests. An order is a sales record the law
//! requires a retailer to keep (tax, accounting), so erasure keeps it and
//! removes the person from it: no owner, no buyer alias, the address
//! reduced to its country. Lines, totals and tenders stay.

use futures::future::BoxFuture;
use sqlx::AnyConnection;

use super::store;
use crate::platform::privacy::{self, Chunk, Page, Section, Step, Subject};
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time;

pub const SECTION: Section = Section {
    name: "orders",
    page: orders_page,
};

pub const STEP: Step = Step {
    name: "orders",
    erase,
};

fn keys(subject: &Subject) -> Vec<String> {
    crate::commerce::carts::privacy::owner_keys(subject)
}

fn orders_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    cursor: Option<String>,
    limit: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let after = cursor.unwrap_or_default();
        let orders = store::order_records(&mut *conn, &keys(subject), &after, limit as i64).await?;
        let lines = store::order_line_records(&mut *conn, &privacy::ids_of(&orders)).await?;
        Ok(privacy::page_with_children(
            &orders, &lines, "order_id", "lines", limit,
        ))
    })
}

/// The address an erased person's order keeps: the country (tax), nothing
/// that names or locates the person.
fn reduced_address(address: Option<&str>) -> Option<String> {
    let address: store::AddressDoc = serde_json::from_str(address?).ok()?;
    let reduced = store::AddressDoc {
        name: privacy::ERASED.to_string(),
        lines: Vec::new(),
        city: privacy::ERASED.to_string(),
        postal_code: String::new(),
        country: address.country,
        latitude: None,
        longitude: None,
    };
    serde_json::to_string(&reduced).ok()
}

fn erase<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    _: Option<String>,
    limit: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let at = time::to_micros(tx.now());
        let owned = store::owned_orders(tx.conn(), &keys(subject), limit as i64).await?;
        for (id, address) in &owned {
            let reduced = reduced_address(address.as_deref());
            store::pseudonymize(tx.conn(), id, reduced.as_deref(), at).await?;
        }
        // A pseudonymized order no longer matches: the next chunk finds the rest.
        Ok(Chunk {
            changed: owned.len() as u64,
            next: (!owned.is_empty()).then(String::new),
        })
    })
}
