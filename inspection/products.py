"""Products and their profiles: what a station judges a part of a given product with.

A line runs several products; the PLC, the operator or a frame itself says which one is on the
line, and each frame is judged with that product's profile. A profile is versioned like a
station's rules (inspection/store/products.py); every inspection records the product and the
profile version that judged it.

Example YAML (the body of `PUT /v1/stations/{station}/products/{product}`)::

    description: M8 bolt, zinc plated
    model: default          # the registry model that must judge it; left out: the one served
    rules:                  # left out: the station's own rules
      default: {fail_conf: 0.4, review_conf: 0.2}
      classes: {scratch: {min_area: 30}}
    reference: 3            # the station's reference image version showing this product's
                            # golden part; left out: the station's current reference

The body is a closed set of fields (a misspelt one is refused, as in station rules); a later
field is added here as an optional field, and stored profiles without it stay valid.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from inspection.errors import ConfigError
from inspection.rules import StationRules, parse_body

# A product name is a header value, a URL path segment and a key of the analytics tables.
PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ProductProfile(BaseModel):
    """How one product is judged at one station."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    description: str = Field(default="", max_length=1000)
    model: str | None = Field(
        default=None, pattern=MODEL_NAME,
        description="the registry model that must judge this product (a service serving another "
        "refuses its frames rather than judge them with the wrong model); null: the one served")
    rules: StationRules | None = Field(
        default=None, description="the rules for this product; null: the station's own rules")
    reference: int | None = Field(
        default=None, ge=1, description="the station's reference image version (its golden part) a "
        "reference model judges this product against; null: the station's current reference")

    def rules_or(self, station_rules: StationRules) -> StationRules:
        """The rules a frame of this product is judged with at a station with `station_rules`."""
        return self.rules if self.rules is not None else station_rules

    @classmethod
    def parse(cls, data: dict | str | None, *, source: str = "profile") -> ProductProfile:
        """From a dict or YAML text; `ConfigError` names the source and each problem."""
        return parse_body(cls, data, source=source, what="product profile")


def check_product_id(product: str) -> str:
    """`product` when it is a valid product name; `ConfigError` naming the form otherwise."""
    if not PRODUCT_ID.fullmatch(product):
        raise ConfigError(
            f"product {product!r}: use letters, digits, '.', '_' and '-' (up to 64, starting with a "
            "letter or digit), e.g. m8-bolt; it becomes part of the URL and a header value")
    return product
