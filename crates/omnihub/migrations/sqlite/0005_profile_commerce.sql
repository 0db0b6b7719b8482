-- A profile's orders include those placed as a guest under one of its
-- anonymous ids (GET /v1/customers/{id}/orders, the timeline, the 360° view).
CREATE INDEX orders_anonymous ON orders (anonymous_id, id);
