"""The shapes of a New API deployment's model list and pricing, for the fake console.

- `GET /v1/models` (relay key): `{"success": true, "data": [model…], "object": "list"}`,
  each model `{"id", "object": "model", "created", "owned_by", "supported_endpoint_types"}`
  as New API's `dto.OpenAIModels` marshals it (plus any extra fields a test adds, such
  as other providers' `context_length`).
- `GET /api/pricing` (public): `{"success", "data": [pricing…], "vendors", "group_ratio",
  "usable_group", "supported_endpoint", "auto_groups", "pricing_version"}`, each pricing
  as New API's `model.Pricing` marshals it: `omitempty` fields (`description`, `icon`,
  `tags`, `vendor_id`, `cache_ratio`, `create_cache_ratio`, `billing_mode`,
  `billing_expr`, `pricing_version`) absent when empty, the others always present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NEW_API_CREATED = 1626777600  # the `created` New API gives every model it lists
PRICING_VERSION = "a42d372ccf0b5dd13ecf71203521f9d2"
ENDPOINTS = {
    "openai": {"path": "/v1/chat/completions", "method": "POST"},
    "embeddings": {"path": "/v1/embeddings", "method": "POST"},
}


def model_entry(model_id: str, owned_by: str = "openai", *, created: int = NEW_API_CREATED, **extra: Any) -> dict:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": owned_by,
        "supported_endpoint_types": ["openai"],
        **extra,
    }


@dataclass
class Pricing:
    model_name: str
    model_ratio: float = 0.0
    completion_ratio: float = 1.0
    cache_ratio: float | None = None
    quota_type: int = 0  # 1: model_price dollars per request
    model_price: float = 0.0
    owner_by: str = ""
    vendor_id: int = 0
    enable_groups: list[str] = field(default_factory=lambda: ["default"])
    billing_mode: str = ""
    billing_expr: str = ""

    def as_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"model_name": self.model_name}
        if self.vendor_id:
            item["vendor_id"] = self.vendor_id
        item |= {
            "quota_type": self.quota_type,
            "model_ratio": self.model_ratio,
            "model_price": self.model_price,
            "owner_by": self.owner_by,
            "completion_ratio": self.completion_ratio,
        }
        if self.cache_ratio is not None:
            item["cache_ratio"] = self.cache_ratio
        item |= {"enable_groups": self.enable_groups, "supported_endpoint_types": ["openai"]}
        if self.billing_mode:
            item |= {"billing_mode": self.billing_mode, "billing_expr": self.billing_expr}
        return item | {"wallet_available": True, "subscription_available": True}


def pricing_answer(pricing: list[Pricing], group_ratio: dict[str, float], usable_group: dict[str, str]) -> dict:
    items = [p.as_item() for p in pricing]
    if items:
        items[0]["pricing_version"] = "5a90f2b86c08bd983a9a2e6d66c255f4eaef9c4bc934386d2b6ae84ef0ff1f1f"
    return {
        "success": True,
        "data": items,
        "vendors": [{"id": 1, "name": "OpenAI"}, {"id": 2, "name": "DeepSeek"}],
        "group_ratio": group_ratio,
        "usable_group": usable_group,
        "supported_endpoint": ENDPOINTS,
        "auto_groups": [],
        "pricing_version": PRICING_VERSION,
    }
