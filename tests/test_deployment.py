"""The nightly deployment: schedule and the parameter form Prefect's UI renders."""

import json
from typing import Any

import pytest
from prefect.deployments.runner import RunnerDeployment
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate
from pydantic.json_schema import SkipJsonSchema

from decayrec.config import DecayConfig, DecayrecConfig, OrchestrationConfig, WarehouseConfig
from deployments.backfill import BACKFILL
from deployments.nightly import NIGHTLY
from deployments.reexport import REEXPORT
from deployments.tune import TUNE
from flows.nightly import nightly
from flows.tune import tune_flow


def test_nightly_deployment_runs_at_two_in_the_configured_timezone():
    deployment = NIGHTLY.build(DecayrecConfig(timezone="Europe/Berlin", k=20))
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == "Europe/Berlin"
    # only what differs from the model's defaults is stored with the deployment
    assert deployment.parameters == {"config": {"timezone": "Europe/Berlin", "k": 20}}


# drills and connection tuning: config file and --set only, never the run form
OPERATOR_ONLY = {
    "fail_after_staging",
    "fault_train_once",
    "connect_retries",
    "retry_backoff_seconds",
    "connect_timeout_seconds",
    "lock_wait_seconds",
    "lock_lease_seconds",
}


def walk(schema: dict) -> list[tuple[str, dict]]:
    """(path, property schema) of every property of every object in the schema."""
    found = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                found.append((f"{path}.{name}", prop))
            for key, value in node.items():
                visit(value, f"{path}/{key}" if key != "properties" else path)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")

    visit(schema, "")
    return found


def deployment_schema(deployment: RunnerDeployment) -> dict:
    return deployment._parameter_openapi_schema.model_dump_for_openapi()


@pytest.mark.parametrize("built", [NIGHTLY, TUNE, REEXPORT, BACKFILL], ids=lambda d: d.name)
def test_the_run_form_leads_with_what_operators_change_and_hides_drills(built):
    # the schema Prefect stores with the deployment and renders as the run form
    schema = deployment_schema(built.build())
    assert schema == parameter_schema(built.flow.fn).model_dump_for_openapi()
    definitions = schema["definitions"]
    # every field says what it is, at every depth
    undescribed = [path for path, prop in walk(schema) if not prop.get("description")]
    assert undescribed == []
    # drills and connection tuning are nowhere: not as fields, not in the defaults
    text = json.dumps(schema)
    assert [name for name in sorted(OPERATOR_ONLY) if name in text] == []
    operator_only = {
        name
        for section in (WarehouseConfig, OrchestrationConfig)
        for name, field in section.model_fields.items()
        if SkipJsonSchema() in field.metadata
    }
    assert operator_only == OPERATOR_ONLY
    # lists and mappings show the values in force
    no_default = [
        path
        for path, prop in walk(definitions)
        if prop.get("type") in ("array", "object") and "default" not in prop
    ]
    assert no_default == []
    decay = definitions["DecayConfig"]["properties"]
    assert decay["type_weights"]["default"] == DecayConfig().type_weights
    assert definitions["EvaluationConfig"]["properties"]["ks"]["default"] == [10, 20]
    assert list(decay)[:2] == ["half_life_days", "kernel"]
    assert decay["kernel"]["enum"] == ["exponential", "power_law", "sigmoid", "window", "none"]
    # the model: one section per model, chosen by name
    config = definitions["DecayrecConfig"]["properties"]
    assert list(config)[:3] == ["model", "decay", "k"]
    assert config["k"]["default"] == 10 and "items per user list" in config["k"]["description"]
    model = config["model"]
    assert model["discriminator"]["propertyName"] == "name"
    assert [r["$ref"].rsplit("/", 1)[1] for r in model["oneOf"]] == [
        "EaseConfig",
        "ItemKNNConfig",
        "IALSConfig",
        "SASRecConfig",
    ]
    assert model["default"]["name"] == "ease"
    assert "l2" in definitions["EaseConfig"]["properties"]
    assert "l2" not in definitions["SASRecConfig"]["properties"]


def test_the_as_of_date_is_an_optional_date_that_says_its_default():
    for flow in (nightly, tune_flow):
        schema = parameter_schema(flow.fn).model_dump_for_openapi()
        as_of = schema["properties"]["as_of"]
        assert (as_of["type"], as_of["format"], as_of["position"]) == ("string", "date", 0)
        assert "anyOf" not in as_of and "as_of" not in schema.get("required", [])
        described = " ".join(as_of["description"].split())
        assert described.startswith("the as-of date")
        assert "Empty: today in config.timezone (a scheduled run: the date of its" in described
    assert list(parameter_schema(nightly.fn).model_dump()["properties"]) == ["as_of", "config"]


def test_the_tune_forms_optional_fields_are_plain_fields_not_a_choice_with_none():
    properties = parameter_schema(tune_flow.fn).model_dump_for_openapi()["properties"]
    protocol, max_trials = properties["protocol"], properties["max_trials"]
    assert "anyOf" not in protocol and "anyOf" not in max_trials
    assert protocol["enum"] == ["user_time", "global_time"]
    assert (max_trials["type"], max_trials["minimum"]) == ("integer", 1)


def test_a_drill_from_the_config_file_passes_the_servers_schema_check():
    # what the server does before it creates a deployment's run (enforce_parameter_schema)
    drill = DecayrecConfig.model_validate(
        {"warehouse": {"fail_after_staging": True}, "orchestration": {"lock_wait_seconds": 5}}
    )
    deployment = NIGHTLY.build(drill)
    assert deployment.parameters == {
        "config": {
            "warehouse": {"fail_after_staging": True},
            "orchestration": {"lock_wait_seconds": 5.0},
        }
    }
    schema = deployment_schema(deployment)
    assert validate(deployment.parameters, schema) == []
    # the run gets the drill
    assert DecayrecConfig.model_validate(deployment.parameters["config"]) == drill
    # a misspelt setting is still refused
    [error] = validate({"config": {"decay": {"halflife": 3}}}, schema)
    assert "'halflife' was unexpected" in error.message
