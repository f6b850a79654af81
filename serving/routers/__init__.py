"""One router per resource: inspect, inspections, stations, models, keys, health, oip."""
