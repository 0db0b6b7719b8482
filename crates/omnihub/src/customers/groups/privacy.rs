//! Groups' part of privacy requests: the person's memberships.

use futures::future::BoxFuture;
use sqlx::AnyConnection;

use super::store;
use crate::platform::privacy::{self, Chunk, Page, Section, Step, Subject};
use crate::platform::storage::{StoreError, Tx};

pub const SECTION: Section = Section {
    name: "groups",
    page: memberships_page,
};

/// Groups' erasure step: memberships (the groups themselves stay).
pub const STEP: Step = Step {
    name: "groups",
    erase,
};

fn memberships_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let rows = store::membership_records(conn, &subject.identifier_ids()).await?;
        Ok((rows.iter().map(privacy::record).collect(), None))
    })
}

fn erase<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let deleted = store::delete_memberships(tx.conn(), &subject.identifier_ids()).await?;
        Ok(Chunk::done(deleted))
    })
}
