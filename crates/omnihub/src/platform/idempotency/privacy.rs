//! Stored answers' part of an erasure: an answer kept for replay (24 hours)
//! may repeat what the person sent (an address, an email); it is redacted
//! like an event, and a replay then answers the redacted copy.

use futures::future::BoxFuture;

use super::store;
use crate::platform::privacy::{self, Chunk, Step, Subject};
use crate::platform::storage::{StoreError, Tx};

pub const STEP: Step = Step {
    name: "stored_answers",
    erase,
};

fn erase<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    cursor: Option<String>,
    limit: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let tokens = subject.tokens();
        let cursor = cursor.unwrap_or_default();
        let (key_id, key) = cursor.split_once('\n').unwrap_or(("", ""));
        let rows = store::answers_after(tx.conn(), (key_id, key), (limit * 4) as i64).await?;
        let Some((last_key_id, last_key, _)) = rows.last() else {
            return Ok(Chunk::done(0));
        };
        let next = format!("{last_key_id}\n{last_key}");
        let mut changed = 0;
        for (key_id, key, body) in &rows {
            let Some(body) = body else { continue };
            if let Some(redacted) = privacy::redact_text(body, &tokens) {
                store::rewrite_answer(tx.conn(), key_id, key, &redacted).await?;
                changed += 1;
            }
        }
        Ok(Chunk {
            changed,
            next: Some(next),
        })
    })
}
