"""The quickstart journey (docs/quickstart.md) through the Python client that
openapi-python-client generates from docs/openapi.json: typed models in,
typed models out, nothing written by hand but this script.

    python journey.py HUB_URL ADMIN_KEY      (the client package on sys.path)

Run by .ci/clients.sh against a fresh hub; any failure raises.
"""

import sys
import uuid

from omnihub_client import AuthenticatedClient, Client
from omnihub_client.api.carts import add_cart_line, create_cart
from omnihub_client.api.catalog import archive_product, create_product, list_products
from omnihub_client.api.channels import create_channel
from omnihub_client.api.customers import (
    find_customers,
    get_customer,
    list_customer_merges,
    list_customer_timeline,
)
from omnihub_client.api.inventory import create_location, get_store_availability, record_movements
from omnihub_client.api.keys import create_key
from omnihub_client.api.orders import checkout_cart, get_order, mark_picked_up, mark_ready
from omnihub_client.api.tracking import track_event, track_identify, track_page
from omnihub_client.models import (
    AddLine,
    ChannelKindName,
    CheckoutRequest,
    CreateCart,
    CreateChannel,
    CreateKey,
    CreateLocation,
    CreateProduct,
    CreateProductTitles,
    CreateVariant,
    CreateVariantPrices,
    CreateVariantTitles,
    FulfilmentRequest,
    FulfilmentTypeName,
    IdentifyCall,
    IdentifyCallTraitsType0,
    LocationAddress,
    LocationKindName,
    MovementBatch,
    MovementBody,
    MovementReasonName,
    PageCall,
    PageCallPropertiesType0,
    Problem,
    ScopeName,
    TenderBody,
    TrackCall,
    TrackCallPropertiesType0,
)
from omnihub_client.types import Response


def ok(response: Response, status: int = 200):
    """The parsed body of a successful answer; anything else raises."""
    if response.status_code != status or isinstance(response.parsed, Problem):
        raise AssertionError(
            f"expected {status}, got {response.status_code}: {response.content!r}"
        )
    assert response.parsed is not None, response.content
    return response.parsed


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def main(hub: str, admin_key: str) -> None:
    admin = AuthenticatedClient(base_url=hub, token=admin_key, raise_on_unexpected_status=True)
    suffix = uuid.uuid4().hex[:8]

    # Keys: a web channel with a public storefront key and a trusted backend key.
    web = ok(create_channel.sync_detailed(
        client=admin, body=CreateChannel(kind=ChannelKindName.WEB, name=f"Web store {suffix}")), 201)
    storefront = ok(create_key.sync_detailed(client=admin, body=CreateKey(
        channel_id=web.id, name="storefront",
        scopes=[ScopeName.EVENTSWRITE, ScopeName.CARTSREAD, ScopeName.CARTSWRITE, ScopeName.INVENTORYREAD])), 201)
    backend = ok(create_key.sync_detailed(client=admin, body=CreateKey(
        channel_id=web.id, name="shop backend", scopes=[ScopeName.EVENTSWRITE, ScopeName.CUSTOMERSWRITE])), 201)
    page_client = AuthenticatedClient(base_url=hub, token=storefront.secret)
    backend_client = AuthenticatedClient(base_url=hub, token=backend.secret)

    # The web key tracks a visitor.
    visitor = f"visitor-{suffix}"
    ok(track_page.sync_detailed(client=page_client, body=PageCall(
        anonymous_id=visitor, name="Shirts", properties=PageCallPropertiesType0.from_dict({"path": "/shirts"}))))
    tracked = ok(track_event.sync_detailed(client=page_client, body=TrackCall(
        anonymous_id=visitor, event="Product Viewed",
        properties=TrackCallPropertiesType0.from_dict({"sku": "SHIRT-M"}))))
    check(tracked.success, f"track accepted: {tracked}")

    # A product and a store.
    product = ok(create_product.sync_detailed(client=admin, body=CreateProduct(
        titles=CreateProductTitles.from_dict({"en": "Linen shirt"}),
        variants=[CreateVariant(
            sku="shirt-m", titles=CreateVariantTitles.from_dict({"en": "Linen shirt, M"}),
            prices=CreateVariantPrices.from_dict({"EUR": 4900}))])), 201)
    check(product.variants[0].sku == "SHIRT-M", "SKUs are normalized")
    found = ok(list_products.sync_detailed(client=admin, q="linen"))
    check([p.id for p in found.items] == [product.id], f"search finds the shirt: {found}")
    store = ok(create_location.sync_detailed(client=admin, body=CreateLocation(
        kind=LocationKindName.STORE, name=f"Downtown {suffix}",
        address=LocationAddress(lines=["1 Main Street"], city="Springfield", region="IL",
                                postal_code="62701", country="US"),
        latitude=39.80, longitude=-89.64, pickup_enabled=True, pickup_lead_minutes=60)), 201)
    check(store.address.region == "IL", "the location's address as sent")

    # Stock received.
    moved = ok(record_movements.sync_detailed(client=admin, body=MovementBatch(movements=[MovementBody(
        id=f"delivery-{suffix}", sku="SHIRT-M", location_id=store.id,
        reason=MovementReasonName.RECEIPT, quantity=12)])))
    check(len(moved.applied) == 1, f"one movement applied: {moved}")
    nearby = ok(get_store_availability.sync_detailed(
        client=page_client, sku="SHIRT-M", latitude=39.8, longitude=-89.6))
    check(any(s.location_id == store.id for s in nearby.items), f"the store has it: {nearby}")

    # A guest cart; the login (trusted key) makes it the customer's.
    cart = ok(create_cart.sync_detailed(
        client=page_client, body=CreateCart(anonymous_id=visitor, currency="EUR")), 201)
    cart = ok(add_cart_line.sync_detailed(cart.id, client=page_client, body=AddLine(sku="SHIRT-M", quantity=1)))
    check(cart.total_minor == 4900, f"cart total: {cart.total_minor}")
    user_id = f"ada-{suffix}"
    ok(track_identify.sync_detailed(client=backend_client, body=IdentifyCall(
        user_id=user_id, anonymous_id=visitor,
        traits=IdentifyCallTraitsType0.from_dict({"email": f"{user_id}@example.com", "name": "Ada"}))))

    # Pickup checkout, ready, picked up.
    order = ok(checkout_cart.sync_detailed(
        cart.id, client=page_client, idempotency_key=f"checkout-{suffix}",
        body=CheckoutRequest(
            fulfilment=FulfilmentRequest(type_=FulfilmentTypeName.PICKUP, location_id=store.id),
            tenders=[TenderBody(method="card", reference="psp_0001", amount_minor=4900)])), 201)
    check(order.groups[0].ready_by is not None, "a pickup promises a ready time")
    check(ok(mark_ready.sync_detailed(order.id, client=admin)).status.value == "ready_for_pickup",
          "ready")
    check(ok(mark_picked_up.sync_detailed(order.id, client=admin)).status.value == "picked_up",
          "picked up")
    check(ok(get_order.sync_detailed(order.id, client=admin)).status.value == "picked_up", "read back")

    # The customer's 360° view.
    lookup = ok(find_customers.sync_detailed(client=admin, identifier=f"user_id:{user_id}"))
    customer_id = lookup.items[0].id
    customer = ok(get_customer.sync_detailed(customer_id, client=admin))
    check([o.id for o in customer.orders] == [order.id], f"the order on the profile: {customer.orders}")
    check([c.id for c in customer.carts] == [cart.id], f"the cart on the profile: {customer.carts}")
    timeline = ok(list_customer_timeline.sync_detailed(customer_id, client=admin, limit=10))
    check(len(timeline.items) >= 3, f"page, track and identify on the timeline: {timeline.items}")
    merges = ok(list_customer_merges.sync_detailed(customer_id, client=admin))
    check(isinstance(merges.items, list), f"merges parse: {merges}")

    # Catalog upkeep: archived, the shirt is no longer for sale.
    archived = ok(archive_product.sync_detailed(product.id, client=admin))
    check(archived.status.value == "archived", "archived")
    again = ok(create_cart.sync_detailed(
        client=page_client, body=CreateCart(anonymous_id=f"{visitor}-2", currency="EUR")), 201)
    refused = add_cart_line.sync_detailed(again.id, client=page_client, body=AddLine(sku="SHIRT-M", quantity=1))
    check(refused.status_code == 409 and isinstance(refused.parsed, Problem)
          and refused.parsed.code == "sku_archived", f"archived SKU refused: {refused.content!r}")

    # Unauthenticated calls parse too (a Problem, not a crash).
    anonymous = Client(base_url=hub)
    refused = get_order.sync_detailed(order.id, client=anonymous)
    check(refused.status_code == 401 and isinstance(refused.parsed, Problem), "401 as a Problem")
    print(f"journey ok: order {order.id} picked up, customer {customer_id}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
