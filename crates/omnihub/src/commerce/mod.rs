//! What is sold and how: the catalog, locations, the stock ledger and
//! reservations (inventory), carts and orders. Commerce calls the customers
//! context through its public API (resolving an identifier, locking the
//! identity graph), never through its storage.

pub mod carts;
pub mod catalog;
pub mod inventory;
pub mod locations;
pub mod orders;

pub mod state;

pub use state::CommerceState;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The commerce context's `/v1` routes.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    CommerceState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(
            catalog::http::create_product,
            catalog::upkeep_http::list_products
        ))
        .routes(routes!(
            catalog::http::get_product,
            catalog::upkeep_http::update_product
        ))
        .routes(routes!(catalog::upkeep_http::archive_product))
        .routes(routes!(catalog::upkeep_http::unarchive_product))
        .routes(routes!(catalog::http::list_variants))
        .routes(routes!(catalog::upkeep_http::update_variant))
        .routes(routes!(catalog::upkeep_http::archive_variant))
        .routes(routes!(catalog::upkeep_http::unarchive_variant))
        .routes(routes!(
            locations::http::create_location,
            locations::http::list_locations
        ))
        .routes(routes!(locations::http::get_location))
        .merge(inventory_routes())
        .routes(routes!(carts::http::create_cart))
        .routes(routes!(carts::http::merge_carts))
        .routes(routes!(carts::http::get_cart))
        .routes(routes!(carts::http::get_customer_cart))
        .routes(routes!(carts::http::add_line))
        .routes(routes!(carts::http::update_line, carts::http::delete_line))
        .routes(routes!(orders::http::checkout_cart))
        .routes(routes!(orders::http::create_pos_order))
        .routes(routes!(orders::http::import_order))
        .routes(routes!(orders::http::get_order))
        .routes(routes!(orders::http::list_customer_orders))
        .routes(routes!(orders::http::mark_ready))
        .routes(routes!(orders::http::mark_picked_up))
        .routes(routes!(orders::http::ship_order))
        .routes(routes!(orders::http::mark_delivered))
        .routes(routes!(orders::http::cancel_order))
}

fn inventory_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    CommerceState: FromRef<S>,
{
    use inventory::http;
    OpenApiRouter::new()
        .routes(routes!(http::record_movements))
        .routes(routes!(http::list_levels))
        .routes(routes!(http::list_incidents))
        .routes(routes!(http::verify_ledger))
        .routes(routes!(http::rebuild_ledger))
        .routes(routes!(http::get_availability))
        .routes(routes!(http::get_store_availability))
        .routes(routes!(http::create_reservation))
        .routes(routes!(http::get_reservation))
        .routes(routes!(http::release_reservation))
        .routes(routes!(http::allocate_reservation))
        .routes(routes!(http::fulfil_reservation))
        .routes(routes!(http::create_transfer))
        .routes(routes!(http::get_transfer))
        .routes(routes!(http::receive_transfer))
        .routes(routes!(http::cancel_transfer))
        .routes(routes!(http::plan_sourcing))
        .routes(routes!(http::get_policy, http::put_policy))
}
