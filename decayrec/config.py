"""The one typed configuration of decayrec.

The CLI, the Prefect flow parameters, the deployments and the YAML config file all
build a :class:`DecayrecConfig`; every default lives here and nowhere else.
"""

from __future__ import annotations

import functools
import operator
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

# Names that end up inside SQL as identifiers or inside expressions (event types,
# column names) must match these; values are always bound as parameters.
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-]{0,62}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


def check_column_name(name: str, what: str) -> str:
    if not _COLUMN_NAME.match(name):
        raise ConfigError(
            f"{what} {name!r} is not an allowed column name "
            "(letters, digits, '_', ' ', '.', '-'; no quotes or semicolons)"
        )
    return name


def check_event_type(name: str) -> str:
    if not _EVENT_TYPE.match(name):
        raise ConfigError(f"event type {name!r} may only hold letters, digits, '_', '.', '-'")
    return name


def _operator_only_fields(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A section with settings kept out of the run form (see OperatorOnly) still accepts
    them in a deployment's stored parameters, which Prefect checks against the form's
    schema: its schema does not forbid properties it does not list (pydantic still does)."""
    if any(_is_operator_only(f.metadata) for f in model.model_fields.values()):
        schema.pop("additionalProperties", None)


def _is_operator_only(metadata: list[Any]) -> bool:
    return any(isinstance(m, SkipJsonSchema) for m in metadata)


# A setting of the config file and the command line (`--set`) that the Prefect run form
# does not show: fault-injection drills and connection tuning. It stays a field of the
# config (validated, honoured by every run); the JSON schema Prefect renders as the form
# leaves it out, and a dump leaves it out while it holds its default (so the form's
# default config does not show it either). Declare it as
# `name: OperatorOnly[type] = operator_only(default, ...)`.
OperatorOnly = SkipJsonSchema


def operator_only(default: Any, **field: Any) -> Any:
    """The Field of an OperatorOnly setting: dumped only when it differs from `default`."""
    return Field(default, exclude_if=functools.partial(operator.eq, default), **field)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_operator_only_fields)


class ColumnMapping(_Model):
    """Which column of a source file holds each canonical field."""

    user_id: str = Field("user_id", description="column holding the user id")
    item_id: str = Field("item_id", description="column holding the item id")
    event_ts: str = Field("event_ts", description="column holding the event time")
    event_type: str | None = Field(
        "event_type", description="column holding the event type (None: use the source's constant)"
    )
    value: str | None = Field("value", description="column holding the value (None: no value)")

    @model_validator(mode="after")
    def _names_are_safe(self) -> ColumnMapping:
        for field, name in self.model_dump().items():
            if name is not None:
                check_column_name(name, f"column mapping {field}")
        return self


class SourceConfig(_Model):
    """One source of events: a file path or a glob."""

    path: str = Field(description="file path or glob (CSV, Parquet or JSON Lines)")
    format: Literal["auto", "csv", "parquet", "jsonl"] = Field(
        "auto", description="file format; auto goes by the file name's extension"
    )
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping, description="which column holds each canonical field"
    )
    event_type: str | None = Field(
        None, description="constant event type for files without an event type column"
    )
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns", "iso"] = Field(
        "auto", description="unit of the event time column; auto detects it per column"
    )
    name: str | None = Field(None, description="source name kept as lineage (default: the path)")

    @model_validator(mode="after")
    def _type_given(self) -> SourceConfig:
        if self.columns.event_type is None and self.event_type is None:
            raise ConfigError(
                f"source {self.path}: give either columns.event_type or a constant event_type"
            )
        if self.event_type is not None:
            check_event_type(self.event_type)
        return self


class ValidationConfig(_Model):
    """Row- and batch-level expectations applied to each batch before it reaches `events`."""

    event_types: list[str] = Field(
        ["view", "click", "cart", "purchase", "rating", "tag"],
        description="allowed event types",
    )
    max_future_skew_hours: float = Field(
        1.0, ge=0, description="events later than ingestion time plus this are rejected"
    )
    min_event_ts: datetime = Field(
        datetime(1990, 1, 1, tzinfo=UTC), description="events before this are rejected"
    )
    value_ranges: dict[str, tuple[float | None, float | None]] = Field(
        {"rating": (0.5, 5.0)},
        description="inclusive [min, max] of `value` per event type; None leaves a side open",
    )
    max_bad_row_share: float = Field(
        0.2, ge=0, le=1, description="a batch with a larger share of bad rows fails the run"
    )
    gx_max_rows: int = Field(
        200_000,
        ge=1,
        description="Great Expectations judges a batch with more parsed rows on a repeatable "
        "uniform sample of this many (bounded memory); the SQL row checks and the bad-row "
        "share always cover every row",
    )
    gx_defer_min_rows: int | None = Field(
        1_000_000,
        ge=1,
        description="a batch with at least this many parsed rows and no bad row (the SQL "
        "checks cover every row with the same rules) gets its Great Expectations run after "
        "the lists are published (the gx-audit stage), off the critical path; null: GX "
        "always judges a batch before it is loaded",
    )

    @field_validator("event_types")
    @classmethod
    def _types_safe(cls, v: list[str]) -> list[str]:
        return [check_event_type(t) for t in v]

    @field_validator("value_ranges")
    @classmethod
    def _range_types_safe(cls, v: dict) -> dict:
        for t in v:
            check_event_type(t)
        return v


class DecayConfig(_Model):
    """How the past is weighted: w(u, i) = S( sum_e type_weight(e) * K(age_e / memory) ).

    age_e = T - ts_e in days; K is the kernel (see decayrec.lake.decay); memory =
    type_memory[type] * user memory (1 unless `user_decay` is on); S is the saturation
    of repeated interactions.
    """

    # the decay defaults: chosen on MovieLens-small's validation split by `decayrec tune`
    # and bench/decay_table.py, measured on the published lists (README, Dynamic interest decay)
    half_life_days: float = Field(
        365.0, gt=0, description="exponential: K = 2^(-age / half_life_days)"
    )
    kernel: Literal["exponential", "power_law", "sigmoid", "window", "none"] = Field(
        "exponential", description="decay kernel K(age)"
    )
    reference: Literal["user_last", "as_of"] = Field(
        "user_last",
        description="where a user's ages count from: the user's own latest event (a user "
        "away for a year keeps their history's weight) or the as-of instant; decayed "
        "popularity always counts from the as-of instant",
    )
    recency_events: float = Field(
        5.0,
        ge=0,
        description="scoring: a user's item is weighted 2^(-n / recency_events), n = the "
        "user's items touched later than it (what the user did last counts most); 0: off. "
        "Models learn from the unweighted rows",
    )
    pair_half_life_days: float = Field(
        1.0,
        ge=0,
        description="item-item relations (EASE's gram, item-item's co-occurrences): a user's "
        "pair of items counts 2^(-gap / pair_half_life_days), gap = days between the user's "
        "two interactions; 0: off (every pair counts fully)",
    )
    power_tau_days: float = Field(30.0, gt=0, description="power_law: K = (1 + age/tau)^-p")
    power_exponent: float = Field(1.0, gt=0, description="power_law: the exponent p")
    sigmoid_midpoint_days: float = Field(
        180.0, ge=0, description="sigmoid: K = 1 / (1 + exp((age - t0) / s)); t0 in days"
    )
    sigmoid_width_days: float = Field(30.0, gt=0, description="sigmoid: the width s in days")
    window_days: float = Field(365.0, gt=0, description="window: K = 1 if age < window else 0")
    type_weights: dict[str, float] = Field(
        {
            "view": 1.0,
            "click": 1.5,
            "cart": 3.0,
            "purchase": 5.0,
            "rating": 1.0,
            "tag": 1.0,
        },
        description="weight of one event of each type; types not listed weigh 0",
    )
    type_memory: dict[str, float] = Field(
        {},
        description="per event type, how much longer it is remembered: its ages are divided "
        "by this (exponential: the type's half-life is half_life_days times this); default 1",
    )
    saturation: Literal["none", "log1p", "cap"] = Field(
        "none", description="repeated interactions: none (sum), log1p(sum) or min(sum, cap)"
    )
    saturation_cap: float = Field(3.0, gt=0, description="the cap of saturation 'cap'")
    user_decay: Literal["off", "drift"] = Field(
        "off",
        description="per-user memory: 'drift' makes users whose recent items differ from "
        "their older ones forget faster (see decayrec.lake.dynamic)",
    )
    drift_strength: float = Field(
        1.0, ge=0, description="user memory = (median drift / user drift) ^ drift_strength"
    )
    user_memory_min: float = Field(0.25, gt=0, description="lower clamp of a user's memory")
    user_memory_max: float = Field(4.0, gt=0, description="upper clamp of a user's memory")

    @field_validator("type_weights", "type_memory")
    @classmethod
    def _weights_safe(cls, v: dict[str, float]) -> dict[str, float]:
        for t, w in v.items():
            check_event_type(t)
            if w < 0:
                raise ConfigError(f"weight or memory of event type {t!r} must be >= 0, got {w}")
        return v

    @model_validator(mode="after")
    def _clamp_order(self) -> DecayConfig:
        if self.user_memory_min > self.user_memory_max:
            raise ConfigError("decay.user_memory_min must not exceed decay.user_memory_max")
        return self


class ModelSettings(_Model):
    """What every model section holds: where the model runs, how its lists are scored,
    and the champion/challenger gate it must pass. Each model adds its own settings in
    a section of its own (`EaseConfig`, ...), chosen by `name`."""

    # the section's settings that `decayrec tune` searches (decayrec.evaluation.tune)
    tuned: ClassVar[tuple[str, ...]] = ()

    name: str = Field(description="model to train")
    gate_metric: str = Field(
        "ndcg@10", description="gate: metric of the first evaluation protocol compared"
    )
    gate_tolerance: float = Field(
        0.002,
        ge=0,
        description="gate: publish the challenger unless it is worse than the champion by more "
        "than this (absolute, in gate_metric)",
    )
    min_history: int = Field(
        3, ge=1, description="users with fewer distinct items get the popularity fallback"
    )
    user_batch: int = Field(2048, ge=1, description="users scored per batch (bounds memory)")
    score_memory_mb: float = Field(
        2048.0,
        gt=0,
        description="scoring: memory budget of one batch's dense score tensors; the batch "
        "shrinks below user_batch on large catalogues to stay within it; item-item builds "
        "its co-occurrences whole when they fit in it, else in row blocks of about this size",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device")
    refit_every_days: int = Field(
        1,
        ge=1,
        description="refit the item side (EASE's B, the item-item similarities, iALS's item "
        "factors, the sequence weights) every this many days; 1: every night. On the other "
        "nights the live lists' model is kept, only the users whose scored rows changed (new "
        "events) or whose lists hold popularity rows are re-scored and every other list is "
        "carried forward. A carried list equals a fresh re-score when a user's weights do not "
        "depend on the as-of date: decay.reference 'user_last' (or kernel 'none'), no content "
        "blend and a model that reads no as-of time (not sasrec); otherwise every user is "
        "re-scored with the kept model. A tuning winner, changed settings or a new champion "
        "refit at once",
    )

    @property
    def sequence_events(self) -> int:
        """Events per user a snapshot keeps for this model (0: it reads no sequences)."""
        return 0


class EaseConfig(ModelSettings):
    """EASE (decayrec/models/ease.py): the item-item ridge regression in closed form."""

    tuned: ClassVar[tuple[str, ...]] = ("l2",)

    name: Literal["ease"] = Field("ease", description="EASE: item-item ridge regression")
    l2: float = Field(400.0, gt=0, description="EASE ridge penalty lambda")
    max_items: int = Field(
        40_000, ge=1, description="EASE needs items^2 memory: refuse catalogues larger than this"
    )


class ItemKNNConfig(ModelSettings):
    """Item-item neighbours (decayrec/models/itemknn.py) on the decayed affinities."""

    tuned: ClassVar[tuple[str, ...]] = ("similarity", "neighbours")

    name: Literal["itemknn"] = Field("itemknn", description="item-item nearest neighbours")
    similarity: Literal["cosine", "jaccard", "lift"] = Field(
        "jaccard", description="item-item similarity on the co-occurrences"
    )
    neighbours: int = Field(100, ge=1, description="item-item: neighbours kept per item")
    cooccurrence: Literal["decayed", "counts"] = Field(
        "decayed",
        description="item-item: similarity from the decay-weighted co-occurrences, or from "
        "plain counts of who touched what (as SAR; the decay then weighs only the user's side)",
    )


class IALSConfig(ModelSettings):
    """Weighted implicit ALS (decayrec/models/ials.py) on decayed confidences."""

    tuned: ClassVar[tuple[str, ...]] = ("factors", "reg", "alpha")

    name: Literal["ials"] = Field("ials", description="weighted implicit ALS")
    seed: int = Field(0, description="random seed of the factors' start")
    factors: int = Field(64, ge=1, description="iALS latent dimensions")
    alpha: float = Field(10.0, gt=0, description="iALS confidence 1 + alpha * weight")
    reg: float = Field(1.0, gt=0, description="iALS L2 regularisation of the factors")
    iterations: int = Field(15, ge=1, description="iALS alternating sweeps")
    cg_steps: int = Field(3, ge=1, description="iALS conjugate-gradient steps per solve")


class SASRecConfig(ModelSettings):
    """The time-aware sequential Transformer (decayrec/models/sasrec.py)."""

    name: Literal["sasrec"] = Field("sasrec", description="time-aware sequential Transformer")
    seed: int = Field(0, description="random seed of the network's start and training")
    seq_len: int = Field(50, ge=2, description="sasrec: events per user the Transformer attends to")
    # validation NDCG@10 of the sequence model alone (bench/validate_published.py): 0.0799
    # with each user's last 200 events, 0.0866 with every event (as RecBole trains)
    seq_history: int = Field(
        100_000,
        ge=2,
        description="sasrec: most recent events per user kept in the snapshot (training cuts "
        "them into windows of seq_len); the default keeps whole histories",
    )
    seq_dim: int = Field(64, ge=8, description="sasrec: embedding and hidden size")
    seq_layers: int = Field(2, ge=1, description="sasrec: self-attention blocks")
    seq_heads: int = Field(2, ge=1, description="sasrec: attention heads (divide seq_dim)")
    seq_dropout: float = Field(0.2, ge=0, lt=1, description="sasrec: dropout")
    seq_epochs: int = Field(200, ge=1, description="sasrec: most training epochs")
    seq_patience: int = Field(
        5, ge=1, description="sasrec: stop after this many epochs without a better validation"
    )
    seq_holdout: int = Field(
        5,
        ge=1,
        description="sasrec: last events per user held out to pick the epoch (validation)",
    )
    # validation NDCG@10 (bench/sasrec_quality.py): 0.0794 with one final epoch, 0.0781 without
    seq_final_epochs: int = Field(
        1,
        ge=0,
        description="sasrec: epochs over every event (held-out ones included) after the "
        "best validation epoch",
    )
    seq_away_quantile: float | None = Field(
        None,
        gt=0,
        le=1,
        description="sasrec: at scoring, cap the time since a user's last event at this "
        "quantile of the gaps between events seen in training (none: no cap)",
    )
    seq_time_bias: bool = Field(
        False,
        description="sasrec: read event times (away embedding, attention time bias); off "
        "by default: on MovieLens-small validation it halved NDCG@10 (rating times are "
        "not consumption times)",
    )
    seq_targets: int = Field(
        1,
        ge=1,
        description="sasrec: each position learns the next this many events (1: the next "
        "event, as SASRec)",
    )
    seq_item_init: Literal["auto", "id", "text"] = Field(
        "auto",
        description="sasrec: start the item embeddings from the items' text vectors (text: "
        "the packaged sentence-transformer on the item catalogue, as content uses it) or "
        "at random (id); auto: text when there is a catalogue (content.catalogue, or "
        "movies.csv beside a MovieLens ratings source)",
    )
    # chosen on MovieLens-small's validation split by the published-list measure
    # (bench/validate_published.py --blend-weights): w 0 (the sequence model alone)
    # 0.0799, 0.35 0.1098, 0.5 0.1138, 0.65 0.1163, 0.8 0.1147, 1 (EASE's ranks) 0.1091
    seq_blend: Literal["none", "ease", "itemknn"] = Field(
        "ease",
        description="sasrec: blend the sequence model's scores with this item-item model's, "
        "fitted on the same decayed matrix (decayrec/models/blend.py); none: the sequence "
        "model alone",
    )
    seq_blend_weight: float = Field(
        0.65,
        gt=0,
        le=1,
        description="sasrec: the item-item model's share w of the blend: (1 - w) sequence "
        "+ w item-item, each scaled by the user's best score",
    )
    seq_batch: int = Field(64, ge=1, description="sasrec: sequences per training step")
    seq_lr: float = Field(1e-3, gt=0, description="sasrec: Adam learning rate")
    seq_full_softmax_items: int = Field(
        20_000,
        ge=1,
        description="sasrec: full softmax up to this many items, sampled softmax above (bounds "
        "memory on large catalogues)",
    )
    seq_negatives: int = Field(
        2048, ge=1, description="sasrec: shared negatives of the sampled softmax"
    )

    @property
    def sequence_events(self) -> int:
        return self.seq_history


# The model trained each night: one section per model, chosen by `name` (the registry
# decayrec.models.REGISTRY pairs each section with its model class).
ModelConfig = Annotated[
    EaseConfig | ItemKNNConfig | IALSConfig | SASRecConfig, Field(discriminator="name")
]
MODEL_SECTIONS: dict[str, type[ModelSettings]] = {
    section.model_fields["name"].default: section for section in get_args(get_args(ModelConfig)[0])
}
DEFAULT_MODEL = "ease"


def model_section(fields: Mapping[str, Any]) -> ModelConfig:
    """The model section of flat settings that may also hold other models' settings
    (registry records and tuning winners written before each model had a section of its
    own, a tuning grid point that switches models): the named model's section (default
    EASE) from its own and the common settings. A setting no model has is an error."""
    name = fields.get("name", DEFAULT_MODEL)
    if name not in MODEL_SECTIONS:
        raise ConfigError(f"unknown model {name!r}; expected one of {sorted(MODEL_SECTIONS)}")
    own = MODEL_SECTIONS[name].model_fields
    others = {key for section in MODEL_SECTIONS.values() for key in section.model_fields}
    kept = {k: v for k, v in fields.items() if k in own or k not in others}
    return MODEL_SECTIONS[name].model_validate({**kept, "name": name})


class EvaluationConfig(_Model):
    """The temporal backtests of DESIGN.md run on every nightly run."""

    protocols: list[Literal["user_time", "global_time"]] = Field(
        ["user_time", "global_time"],
        description="backtest protocols: user-time holds out each user's last items, "
        "global-time the events after one cutoff; the first is the gate's",
    )
    ks: list[int] = Field([10, 20], description="list lengths the metrics are measured at")
    holdout_items: int = Field(5, ge=1, description="user-time: last distinct items held out")
    min_user_events: int = Field(
        10, ge=2, description="user-time: users with fewer are not evaluated"
    )
    test_fraction: float = Field(
        0.1, gt=0, lt=1, description="global-time: share of events after the cutoff"
    )
    cutoff: datetime | None = Field(None, description="global-time: explicit cutoff")


# Identifiers that name a database object (a PostgreSQL schema): plain names only.
_SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# what precedes a '?' when the first '@' is in the query: [host][:port][/path]
_HOST_PORT_PATH = re.compile(r"[^:/@]*(:\d*)?(/.*)?", re.DOTALL)
# a query parameter holding a password (password=, sslpassword=, any case)
_QUERY_PASSWORD = re.compile(r"(?P<key>(?:^|[?&;])[^=&;?#]*password=)(?P<value>[^&;]*)", re.I)


def check_identifier(name: str, what: str) -> str:
    """A name that is put into SQL as an identifier: letters, digits and '_' only."""
    if not _SQL_IDENTIFIER.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a plain SQL identifier (a letter or '_', then letters, "
            "digits or '_', at most 63; no quotes, semicolons, dots or spaces)"
        )
    return name


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """(scheme://, userinfo, @rest) of a URL with a userinfo part, else None. The userinfo
    runs to the last '@' before the host, whatever it holds ('/', ':', '@', '?', '#', '%'
    included: a password typed raw into a URL); an '@' that only appears in the query
    string (after host[:port][/path]?) is not one."""
    scheme = _URL_SCHEME.match(url)
    if not scheme:
        return None
    rest = url[scheme.end() :]
    first_at = rest.find("@")
    if first_at < 0:
        return None
    query = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    if query < first_at and _HOST_PORT_PATH.fullmatch(rest[:query]):
        return None
    after = [i for i in (rest.find("?", first_at), rest.find("#", first_at)) if i >= 0]
    last_at = rest.rfind("@", 0, min(after, default=len(rest)))
    return url[: scheme.end()], rest[:last_at], rest[last_at:]


def url_passwords(url: str) -> list[str]:
    """Every password in a URL: the userinfo's (scheme://user:password@host/...) and the
    query's (?password=..., ?sslpassword=..., any case), as written (maybe
    percent-encoded)."""
    found = []
    tail = url
    parts = _split_userinfo(url)
    if parts is not None:
        _, userinfo, tail = parts
        if ":" in userinfo and userinfo.split(":", 1)[1]:
            found.append(userinfo.split(":", 1)[1])
    found += [m.group("value") for m in _QUERY_PASSWORD.finditer(tail) if m.group("value")]
    return found


def url_password(url: str) -> str | None:
    """The (first) password embedded in a URL, if any: see url_passwords."""
    passwords = url_passwords(url)
    return passwords[0] if passwords else None


def mask_url(url: str) -> str:
    """The URL with every password replaced by ***, safe to print, log and record: the
    userinfo's (user:***@host) and the query's (password=***)."""
    head, tail = "", url
    parts = _split_userinfo(url)
    if parts is not None:
        scheme, userinfo, tail = parts
        user, colon, password = userinfo.partition(":")
        head = f"{scheme}{user}:***" if colon and password else f"{scheme}{userinfo}"
    tail = _QUERY_PASSWORD.sub(lambda m: m.group("key") + ("***" if m.group("value") else ""), tail)
    return head + tail


class WarehouseConfig(_Model):
    """Where and how lists are published (the URL itself: `warehouse_url`, the environment
    variable `url_env` or the Prefect Secret block `secret_block`)."""

    url_env: str = Field(
        "DECAYREC_WAREHOUSE_URL",
        description="environment variable holding the warehouse URL when warehouse_url is unset "
        "(the place for a PostgreSQL URL with a password)",
    )
    secret_block: str | None = Field(
        None,
        description="name of a Prefect Secret block holding the warehouse URL (used when "
        "warehouse_url is unset; takes precedence over url_env)",
    )
    schema_name: str | None = Field(
        None,
        description="PostgreSQL schema of the warehouse tables (created if missing; default: "
        "the connection's search_path, normally public); ignored by DuckDB",
    )
    history_days: int = Field(
        30,
        ge=1,
        description="days of lists kept: publishing date D deletes the lists of dates on or "
        "before D - history_days, in the same transaction",
    )
    connect_retries: OperatorOnly[int] = operator_only(
        3, ge=0, description="PostgreSQL: further connection attempts after the first fails"
    )
    retry_backoff_seconds: OperatorOnly[float] = operator_only(
        1.0, ge=0, description="PostgreSQL: wait before retry n is backoff * 2^(n-1) seconds"
    )
    connect_timeout_seconds: OperatorOnly[int] = operator_only(
        10, ge=1, description="PostgreSQL: give up one connection attempt after this"
    )
    fail_after_staging: OperatorOnly[bool] = operator_only(
        False,
        description="fault injection for drills and tests: the publish raises after the lists "
        "are staged, before the swap (the published lists must stay as they were)",
    )

    @field_validator("schema_name")
    @classmethod
    def _schema_safe(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "warehouse.schema_name")

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        return check_identifier(v, "warehouse.url_env")

    @field_validator("secret_block")
    @classmethod
    def _block_name(cls, v: str | None) -> str | None:
        if v is not None and not _BLOCK_NAME.match(v):
            raise ConfigError(
                f"warehouse.secret_block {v!r} is not a Prefect block name (lowercase letters, "
                "digits and '-')"
            )
        return v


class OrchestrationConfig(_Model):
    """How Prefect runs the flows: sharded scoring, its task runner, run locks, late starts."""

    score_shards: int = Field(
        1,
        ge=1,
        le=256,
        description="scoring is split by a hash of user_id into this many shards, each a "
        "mapped Prefect task; 1 scores inside the train task",
    )
    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="task runner of the shards: threads in the flow's process (scoring "
        "sharded, the fit in one task), or Dask (prefect-dask: dask_address, else a local "
        "cluster of dask_workers processes), where the item side's fit is sharded too: a "
        "map-reduce of sums over the user shards for EASE and item-item",
    )
    dask_address: str | None = Field(
        None, description="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786"
    )
    dask_workers: int = Field(2, ge=1, le=256, description="workers of the local Dask cluster")
    lock_wait_seconds: OperatorOnly[float] = operator_only(
        3600.0,
        ge=0,
        description="a nightly run waits this long for another nightly run on the same "
        "warehouse to finish, then is refused (never two publishing at once)",
    )
    lock_lease_seconds: OperatorOnly[float] = operator_only(
        120.0,
        ge=60,
        le=300,
        description="lease of the Prefect global concurrency slot a run holds on a Prefect "
        "server of its own (PREFECT_API_URL): the live run renews it, and the server frees "
        "the slot of a killed run once it expires (Prefect allows 60 s at least). A "
        "temporary server (no PREFECT_API_URL) frees no slot, so there the file lock in "
        "data_dir/locks/ alone serialises runs, and is freed by the OS when its holder dies",
    )
    max_start_delay_hours: float = Field(
        6.0,
        gt=0,
        description="a deployment run starting more than this after its scheduled slot "
        "records 'skipped' and does nothing (missed nights do not pile up)",
    )
    fault_train_once: OperatorOnly[bool] = operator_only(
        False,
        description="fault injection for drills and tests: the first training on a snapshot "
        "raises (a marker file in data_dir/faults/ remembers it), a rerun trains normally",
    )


class ContentConfig(_Model):
    """Cold-start items (decayrec.content): item texts embedded by the packaged
    sentence-transformer, blended into the model's scores for items with fewer than
    `min_interactions` training interactions: final = (1 - b) * model + b * content, with
    b = 1 - n / min_interactions (a never-seen item is scored by its text alone) and
    content = s * tanh(weight * z): s the user's scale_rank-th best model score, z the
    item's text similarity to the user's items, standardised per user."""

    enabled: bool = Field(False, description="append catalogue items and blend content scores")
    catalogue: str | None = Field(
        None,
        description="item catalogue, CSV or Parquet (id column + text columns); unset: the "
        "movies.csv beside a MovieLens ratings source, if any",
    )
    id_column: str = Field("item_id", description="catalogue column holding the item id")
    text_columns: list[str] = Field(
        ["title"],
        description="catalogue columns joined into the item text: the first as it is, the "
        "others as 'Column: value'",
    )
    list_separator: str = Field("|", description="separator of list values inside a text field")
    # chosen on MovieLens-small's validation split (bench/cold_start.py)
    min_interactions: int = Field(
        1, ge=0, description="items with fewer training interactions get content; 0: off"
    )
    weight: float = Field(
        0.9,
        ge=0,
        description="how fast text similarity z (standard deviations above the user's "
        "average item) approaches the scale: content = s * tanh(weight * z)",
    )
    scale_rank: int = Field(
        9,
        ge=1,
        description="content scores stay below the user's scale_rank-th best model score: "
        "the first scale_rank places of a list always stay the model's",
    )
    batch_size: int = Field(64, ge=1, description="texts embedded per batch")
    cache_dir: Path | None = Field(
        None, description="embeddings cache (default: data_dir/content), keyed on the catalogue"
    )
    backtest_grid: list[tuple[int, float]] = Field(
        [],
        description="backtests also measure these (min_interactions, weight) pairs on the same "
        "fitted model (for choosing them on the validation split)",
    )

    @model_validator(mode="after")
    def _columns_safe(self) -> ContentConfig:
        for name in [self.id_column, *self.text_columns]:
            check_column_name(name, "content column")
        if not self.text_columns:
            raise ConfigError("content.text_columns needs at least one column")
        return self


class PublishConfig(_Model):
    """Sanity bounds that the lists about to be published must pass
    (decayrec.evaluation.publish_check): lists that fail one are not published, the
    previous date's lists stay live and the run fails at its publish-check stage."""

    enabled: bool = Field(True, description="check the lists against the bounds before export")
    max_fallback_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="most share of list rows from the popularity fallback (source 'fallback'); "
        "not applied when the gate decided to publish popularity lists",
    )
    min_coverage_ratio: float = Field(
        0.5,
        ge=0,
        description="catalogue coverage (distinct listed items / items in the snapshot) must be "
        "at least this times the previous published date's; 0: off; not applied when the gate "
        "decided to publish popularity lists",
    )
    min_overlap: float = Field(
        0.0,
        ge=0,
        le=1,
        description="least share of the previous date's (user, item) pairs still listed, over "
        "users listed on both dates; 0: off",
    )


class RetentionConfig(_Model):
    """What stays in data_dir: after each successful publish the nightly run deletes the
    files of older runs (decayrec.evaluation.retention): their run directories, registered
    models, validation results, the snapshots only they used, and finished training
    checkpoints. The warehouse's run history is kept whole."""

    enabled: bool = Field(True, description="prune older runs' files after each publish")
    keep_runs: int = Field(
        3,
        ge=1,
        description="the files of this many most recent runs are kept, plus the champion's "
        "model and snapshot (and the run in progress)",
    )


class DecayrecConfig(_Model):
    """Everything one run of decayrec needs."""

    # a rejected warehouse_url may hold a password: keep input values out of error messages
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # the form shows these first: what an operator changes most
    model: ModelConfig = Field(
        EaseConfig(),
        description="the model trained each night and the gate it must pass: `name` chooses "
        "the model, the other settings are that model's",
    )
    decay: DecayConfig = Field(
        default_factory=DecayConfig,
        description="how the past is weighted: the kernel, its half-life, the event types' weights",
    )
    k: int = Field(10, ge=1, le=1000, description="items per user list")
    sources: list[SourceConfig] = Field(
        [], description="the event files loaded each run (new or changed files only)"
    )
    data_dir: Path = Field(
        Path("decayrec-data"),
        description="lake DuckDB file, snapshots, models, run files, validation results",
    )
    warehouse_url: str | None = Field(
        None,
        description="duckdb:///path/file.duckdb or postgresql://user@host/db without a password "
        "(default: warehouse.secret_block, then $DECAYREC_WAREHOUSE_URL, then warehouse.duckdb "
        "in data_dir)",
    )
    warehouse: WarehouseConfig = Field(
        default_factory=WarehouseConfig, description="where the lists are published, how long kept"
    )
    timezone: str = Field("UTC", description="as-of dates start at midnight in this timezone")
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig,
        description="the checks each new batch of events must pass",
    )
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="the temporal backtests of every run"
    )
    use_tuned: bool = Field(
        True, description="apply the newest tuning winner's model and decay (decayrec tune)"
    )
    publish: PublishConfig = Field(
        default_factory=PublishConfig,
        description="sanity bounds the lists must pass before they are published",
    )
    content: ContentConfig = Field(
        default_factory=ContentConfig, description="cold-start items scored by their text"
    )
    orchestration: OrchestrationConfig = Field(
        default_factory=OrchestrationConfig,
        description="sharded scoring, its task runner, late starts",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="which runs' files stay in data_dir after a successful publish",
    )
    lake_memory_share: float = Field(
        0.4,
        gt=0,
        le=0.9,
        description="share of the machine's memory the lake's DuckDB connection may use before "
        "it spills to disk (DuckDB's own default, 0.8, took 19 GB at 10^8 events)",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _model_named(cls, v: Any) -> Any:
        # a model section without a name is the default model's
        if isinstance(v, Mapping) and "name" not in v:
            return {**v, "name": DEFAULT_MODEL}
        return v

    @field_validator("timezone")
    @classmethod
    def _tz_exists(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception as exc:
            raise ConfigError(f"unknown timezone {v!r}") from exc
        return v

    @field_validator("warehouse_url")
    @classmethod
    def _no_password_in_config(cls, v: str | None) -> str | None:
        if v is not None and url_password(v) is not None:
            raise ConfigError(
                f"warehouse_url {mask_url(v)} holds a password: config files and flow "
                "parameters are stored and shown, so give the URL in the environment "
                "($DECAYREC_WAREHOUSE_URL) or a Prefect Secret block (warehouse.secret_block)"
            )
        return v

    @property
    def lake_path(self) -> Path:
        return Path(self.data_dir) / "lake.duckdb"

    @property
    def resolved_warehouse_url(self) -> str:
        """The warehouse URL, secrets included: warehouse_url, else the Prefect Secret block
        warehouse.secret_block, else $<warehouse.url_env>, else the DuckDB file in data_dir.
        Never print it: print mask_url(...) of it."""
        if self.warehouse_url:
            return self.warehouse_url
        if self.warehouse.secret_block:
            from prefect.blocks.system import Secret

            return str(Secret.load(self.warehouse.secret_block).get()).strip()
        from_env = os.environ.get(self.warehouse.url_env, "").strip()
        if from_env:
            return from_env
        return f"duckdb:///{Path(self.data_dir) / 'warehouse.duckdb'}"

    def as_of_time(self, as_of: date) -> datetime:
        """The instant T of an as-of date: its midnight in the configured timezone, in UTC."""
        local = datetime.combine(as_of, time(0, 0), tzinfo=ZoneInfo(self.timezone))
        return local.astimezone(UTC)

    def today(self) -> date:
        return datetime.now(ZoneInfo(self.timezone)).date()


# A flow's optional as-of date. The run form shows a date picker, left empty for the
# default (today in config.timezone; a scheduled run: its slot's date), not a choice
# between a date and None.
AsOfDate = Annotated[date | None, WithJsonSchema({"type": "string", "format": "date"})]

# The tune flow's optional choices: a field left empty for the default, not a choice
# between a value and None.
TuneProtocol = Annotated[
    Literal["user_time", "global_time"] | None,
    WithJsonSchema({"type": "string", "enum": ["user_time", "global_time"]}),
]
MaxTrials = Annotated[int | None, WithJsonSchema({"type": "integer", "minimum": 1})]


def load_config(path: str | Path | None = None, **overrides: Any) -> DecayrecConfig:
    """Read a YAML config file (if given) and apply top-level overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config file must hold a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return DecayrecConfig.model_validate(data)


def movielens_sources(directory: str | Path) -> list[SourceConfig]:
    """MovieLens ratings.csv as `rating` events (value = rating) and tags.csv as `tag` events."""
    d = Path(directory)
    ratings = SourceConfig(
        path=str(d / "ratings.csv"),
        format="csv",
        columns=ColumnMapping(
            user_id="userId",
            item_id="movieId",
            event_ts="timestamp",
            event_type=None,
            value="rating",
        ),
        event_type="rating",
        timestamp_unit="s",
        name="movielens.ratings",
    )
    tags = SourceConfig(
        path=str(d / "tags.csv"),
        format="csv",
        columns=ColumnMapping(
            user_id="userId", item_id="movieId", event_ts="timestamp", event_type=None, value=None
        ),
        event_type="tag",
        timestamp_unit="s",
        name="movielens.tags",
    )
    return [ratings, tags]
