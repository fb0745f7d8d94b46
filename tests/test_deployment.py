"""The nightly deployment: schedule and the parameter form Prefect's UI renders."""

from prefect.utilities.callables import parameter_schema

from decayrec.config import DecayrecConfig
from deployments.nightly import NIGHTLY
from flows.nightly import nightly


def test_nightly_deployment_runs_at_two_in_the_configured_timezone():
    deployment = NIGHTLY.build(DecayrecConfig(timezone="Europe/Berlin", k=20))
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == "Europe/Berlin"
    # only what differs from the model's defaults is stored with the deployment
    assert deployment.parameters == {"config": {"timezone": "Europe/Berlin", "k": 20}}


def test_parameter_form_is_typed_with_defaults_and_descriptions():
    # the schema Prefect stores with the deployment and renders as the run form
    schema = parameter_schema(nightly).model_dump()
    props = schema["properties"]
    assert set(props) == {"as_of", "config"}
    as_of = props["as_of"]
    assert {"type": "string", "format": "date"} in as_of["anyOf"]
    config = schema["definitions"]["DecayrecConfig"]["properties"]
    assert config["k"]["default"] == 10
    assert "items per user list" in config["k"]["description"]
    decay = schema["definitions"]["DecayConfig"]["properties"]
    assert decay["kernel"]["enum"] == ["exponential", "power_law", "sigmoid", "window", "none"]
