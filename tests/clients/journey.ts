// The quickstart journey typed with the types openapi-typescript generates
// from docs/openapi.json (.ci/clients.sh writes them to ./omnihub.d.ts and
// type-checks this file with `tsc --strict`). It is not run: the Python
// journey runs the same steps against a hub; this file proves the generated
// types accept what the quickstart sends and describe what it reads.

import type { components, paths } from "./omnihub";

type Schemas = components["schemas"];
type Body<P extends keyof paths, M extends "post" | "patch" | "put"> =
  paths[P][M] extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;
type Ok<P extends keyof paths, M extends "get" | "post" | "patch", S extends 200 | 201> =
  paths[P][M] extends { responses: { [K in S]: { content: { "application/json": infer R } } } } ? R : never;

const channel: Body<"/v1/channels", "post"> = { kind: "web", name: "Web store" };
const storefrontKey: Body<"/v1/keys", "post"> = {
  channel_id: "0190d0b8-7f6e-7c3a-9d9f-1a2b3c4d5e6f",
  name: "storefront",
  scopes: ["events:write", "carts:read", "carts:write", "inventory:read"],
};

// Segment calls: free-form properties and traits are maps, not empty objects.
const page: Schemas["PageCall"] = {
  anonymousId: "visitor-1",
  name: "Shirts",
  properties: { path: "/shirts" },
};
const track: Schemas["TrackCall"] = {
  anonymousId: "visitor-1",
  event: "Product Viewed",
  properties: { sku: "SHIRT-M" },
};
const identify: Schemas["IdentifyCall"] = {
  userId: "ada",
  anonymousId: "visitor-1",
  traits: { email: "ada@example.com", name: "Ada" },
};

const product: Body<"/v1/products", "post"> = {
  titles: { en: "Linen shirt" },
  variants: [{ sku: "SHIRT-M", titles: { en: "Linen shirt, M" }, prices: { EUR: 4900 } }],
};
const store: Body<"/v1/locations", "post"> = {
  kind: "store",
  name: "Downtown",
  address: { lines: ["1 Main Street"], city: "Springfield", region: "IL", postal_code: "62701", country: "US" },
  latitude: 39.8,
  longitude: -89.64,
  pickup_enabled: true,
  pickup_lead_minutes: 60,
};
const movements: Body<"/v1/inventory/movements", "post"> = {
  movements: [{ id: "delivery-0001", sku: "SHIRT-M", location_id: "0190d0b8-7f6e-7c3a-9d9f-1a2b3c4d5e70", reason: "receipt", quantity: 12 }],
};
const cart: Body<"/v1/carts", "post"> = { anonymous_id: "visitor-1", currency: "EUR" };
const line: Body<"/v1/carts/{id}/lines", "post"> = { sku: "SHIRT-M", quantity: 1 };
const checkout: Body<"/v1/carts/{id}/checkout", "post"> = {
  fulfilment: { type: "pickup", location_id: "0190d0b8-7f6e-7c3a-9d9f-1a2b3c4d5e70" },
  tenders: [{ method: "card", reference: "psp_0001", amount_minor: 4900 }],
};
const rename: Body<"/v1/products/{id}", "patch"> = { titles: { en: "Linen shirt, washed" } };

// Reading answers: the fields the quickstart reads are typed.
function readyBy(order: Ok<"/v1/orders/{id}", "get", 200>): string | null | undefined {
  const status: Schemas["OrderStatusName"] = order.status;
  return status === "ready_for_pickup" ? order.groups[0]?.ready_by : null;
}
function firstCustomer(lookup: Ok<"/v1/customers", "get", 200>): string | undefined {
  return lookup.items[0]?.id;
}
function archived(products: Ok<"/v1/products", "get", 200>): string[] {
  return products.items.filter((p) => p.status === "archived").map((p) => p.id);
}
function problemCode(problem: Schemas["Problem"]): string {
  return problem.code;
}

export const journey = {
  channel, storefrontKey, page, track, identify, product, store, movements, cart, line, checkout, rename,
  readyBy, firstCustomer, archived, problemCode,
};
