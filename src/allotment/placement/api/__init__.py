"""The Placement HTTP API: routing, microversions, error bodies; one module per resource."""
