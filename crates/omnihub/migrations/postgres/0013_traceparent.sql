-- The W3C trace context (`traceparent`) of the request that caused each
-- event: stored with the event, shown in its envelope and sent with its
-- webhook deliveries, so a request can be followed to its deliveries.
-- NULL for events written before, or by work no request caused.
ALTER TABLE events ADD COLUMN traceparent TEXT;
