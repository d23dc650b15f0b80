"""`ERROR_CODES`: every code the server itself can answer with, its status and meaning, in one place.

A test (tests/web/test_hostile_edges.py) checks that each code written anywhere in `app/` is listed here.
"""

from __future__ import annotations

ERROR_CODES: dict[str, tuple[int, str]] = {
    # request shape (any route)
    "invalid_json": (422, "The body is not a JSON object, not UTF-8, or nests too deep."),
    "validation_error": (422, "A field is missing, of the wrong type (strict: no string numbers) or out of range."),
    "invalid_tenant_id": (422, "A tenant id is not 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit."),
    # /adapt and /predict content
    "too_few_labels": (422, "Fewer than 2 labels (multi-label: 1 label with negative examples is enough)."),
    "too_many_labels": (422, "More labels than `max_labels`."),
    "too_many_examples": (422, "More examples than `max_examples`."),
    "too_many_texts": (
        422,
        "More texts than the endpoint takes (/predict: `max_texts`; /suggest, /unlabeled: `max_examples`).",
    ),
    "too_many_items": (422, "A body list or object longer than its endpoint takes (1,000 unless a limit names it)."),
    "no_texts": (422, "/predict or /unlabeled without texts; /suggest with none and an empty unlabeled pool."),
    "empty_text": (422, "A text that is empty (or only whitespace or invisible characters)."),
    "empty_label": (422, "A label that is empty (or only whitespace or invisible characters)."),
    "invalid_text": (422, "A text that cannot be encoded as UTF-8 (e.g. a lone surrogate)."),
    "invalid_label": (422, "A label that cannot be encoded as UTF-8 (e.g. a lone surrogate)."),
    "text_too_long": (422, "A text longer than `max_text_chars`."),
    "label_too_long": (422, "A label longer than `max_label_chars`."),
    "duplicate_label": (422, "A label declared twice (or named twice in one example's `labels`)."),
    "missing_label": (422, "An example without its `label` (single-label) or `labels` (multi-label)."),
    "multi_label_example": (422, "An example with `labels` in a single-label task (use `label`, or task multi_label)."),
    "single_label_example": (422, "An example with `label` in a multi-label task (use `labels`)."),
    "task_mismatch": (409, "An append naming another task than the tenant's (changing the task is a replace)."),
    "encoder_mismatch": (409, "An append naming another encoder than the tenant's (changing it is a replace)."),
    "encoder_not_served": (409, "The tenant was adapted with an encoder this server does not serve."),
    "unknown_encoder": (422, "`/adapt` names an encoder this server does not serve (GET /encoders)."),
    "undeclared_label": (422, "An example's label is not in the declared `labels`."),
    "label_without_examples": (422, "A declared label with no example or description."),
    "unknown_label": (422, "A label to remove or describe that the tenant does not have."),
    "invalid_option": (422, "An option that does not apply (e.g. `remove_labels` without `mode: append`)."),
    "invalid_top_k": (422, "`top_k` outside 1..`max_top_k`."),
    "invalid_explain": (422, "/predict `explain` outside 0..10."),
    "no_corrections": (422, "/tenants/{id}/feedback with an empty `corrections` list."),
    "too_many_corrections": (422, "/tenants/{id}/feedback with more corrections than `max_texts`."),
    # /tenants/{id}/evaluate and /tenants/{id}/suggest
    "no_examples": (422, "/evaluate with an empty `examples` test set."),
    "invalid_k": (422, "/suggest with `k` below 1."),
    # tenants and keys
    "unknown_tenant": (404, "The tenant has no model."),
    "unknown_version": (404, "The version is not retained."),
    "unknown_key": (404, "No API key with this id."),
    "not_found": (404, "No such path."),
    "method_not_allowed": (405, "The path does not take this method."),
    "concurrent_update": (409, "Another write changed the tenant first; retry."),
    "model_unusable": (409, "The stored model cannot be used or repaired."),
    # access and limits
    "missing_api_key": (401, "No `Authorization: Bearer <key>`."),
    "invalid_api_key": (401, "Unknown or revoked API key."),
    "forbidden_tenant": (403, "The key may not touch this tenant."),
    "admin_required": (403, "The endpoint needs an admin key."),
    "rate_limited": (429, "Rate limit exceeded; see `Retry-After`."),
    "tenant_busy": (429, "The tenant has too many heavy requests (adapt, evaluate, suggest) waiting; see Retry-After."),
    "payload_too_large": (413, "Body larger than `max_body_bytes`."),
    # the HTTP connection (answered by the server before or instead of the app)
    "bad_request": (400, "Malformed HTTP request."),
    "request_timeout": (408, "The whole request did not arrive within `request_timeout_s`."),
    "headers_too_large": (431, "Request line and headers larger than 16 KiB."),
    "client_disconnected": (
        499,
        "The client went away before its answer (logs and metrics only); heavy work it started was stopped.",
    ),
    # the server
    "store_unavailable": (503, "Redis (tenants or keys) is unreachable; retry shortly."),
    "overloaded": (503, "More concurrent connections or requests than `limit_concurrency`; retry shortly."),
    "internal_error": (500, "An unexpected error (logged with the request id)."),
}
