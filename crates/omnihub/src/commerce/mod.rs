//! What is sold and how: the catalog, locations, the stock ledger and
//! reservations (inventory), carts and orders. Commerce calls the customers
//! context through its public API (resolving an identifier, locking the
//! identity graph), never through its storage.

pub mod carts;
pub mod catalog;
pub mod inventory;
pub mod locations;
pub mod orders;
