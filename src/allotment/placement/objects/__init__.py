"""Placement's domain operations, one module per resource (after upstream's ``objects/``):
providers, inventories, resource classes and traits, aggregates, allocations and consumers,
usages, the reshaper and allocation candidates. Every write runs in the shared unit of work
(``store.unit_of_work``); ``service.PlacementService`` is the facade over these modules."""
