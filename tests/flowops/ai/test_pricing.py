"""Model prices: the bundled genai-prices snapshot, FLOWOPS_MODEL_PRICES, cost arithmetic.

The expected prices are those of genai-prices 0.2.3's bundled snapshot (data.py, provider
``openai``), in USD per million tokens: gpt-4o-mini 0.15 input / 0.075 cached input /
0.6 output; gpt-4o 2.5 / 1.25 / 10. They change only when requirements.txt pins a newer
genai-prices.
"""

import socket
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot

from flowops.ai import pricing
from flowops.ai.pricing import ModelPrice, cost_usd, price_for, worst_case_usd
from flowops.exceptions import UserError

GPT_4O_MINI = ModelPrice(input=Decimal("0.15"), cached_input=Decimal("0.075"),
                         output=Decimal("0.6"))


@pytest.fixture(autouse=True)
def no_price_overrides(monkeypatch):
    monkeypatch.delenv("FLOWOPS_MODEL_PRICES", raising=False)


def test_gpt_4o_mini_price_matches_the_snapshot():
    assert price_for("openai:gpt-4o-mini") == GPT_4O_MINI


def test_gpt_4o_price_matches_the_snapshot():
    assert price_for("openai:gpt-4o") == ModelPrice(
        input=Decimal("2.5"), cached_input=Decimal("1.25"), output=Decimal("10"))


def test_dated_snapshot_names_resolve_to_their_model():
    assert price_for("openai:gpt-4o-2024-08-06") == price_for("openai:gpt-4o")
    assert price_for("openai:gpt-4o-mini-2024-07-18") == GPT_4O_MINI


def test_model_without_cached_price_has_no_discount():
    # The first gpt-4o snapshot is listed at $5 / $15 with no cached-input price.
    assert price_for("openai:gpt-4o-2024-05-13") == ModelPrice(
        input=Decimal("5"), cached_input=Decimal("5"), output=Decimal("15"))


def test_prompt_size_tiers_take_the_base_tier():
    # gpt-5.4 doubles its prices above a prompt-size threshold; small requests pay the base.
    assert price_for("openai:gpt-5.4") == ModelPrice(
        input=Decimal("2.5"), cached_input=Decimal("0.25"), output=Decimal("15"))


@pytest.mark.parametrize("model", [
    "openai:llama3",                   # an Ollama model behind the OpenAI-compatible API
    "ollama:llama3",                   # a provider the snapshot does not know
    "gpt-4o",                          # no provider prefix
    "openai:text-embedding-3-small",   # no output token price: not a chat price
])
def test_unknown_model_has_no_price(model):
    assert price_for(model) is None


def test_cost_bills_cached_tokens_at_the_cached_price():
    # given 1,000 prompt tokens of which 400 came from the prompt cache
    cost = cost_usd(GPT_4O_MINI, prompt_tokens=1000, cached_tokens=400, completion_tokens=200)

    # then (600 x 0.15 + 400 x 0.075 + 200 x 0.6) / 1e6
    assert cost == Decimal("0.00024")
    assert cost < cost_usd(GPT_4O_MINI, prompt_tokens=1000, completion_tokens=200)


def test_cost_agrees_with_genai_prices():
    usage = Usage(input_tokens=1234, cache_read_tokens=567, output_tokens=89)
    expected = calc_price(usage, "gpt-4o", provider_id="openai").total_price

    cost = cost_usd(price_for("openai:gpt-4o"), prompt_tokens=1234, cached_tokens=567,
                    completion_tokens=89)

    assert cost == expected


def test_cost_refuses_more_cached_than_prompt_tokens():
    with pytest.raises(ValueError, match="cached_tokens=11"):
        cost_usd(GPT_4O_MINI, prompt_tokens=10, cached_tokens=11, completion_tokens=0)


def test_worst_case_has_no_cached_discount():
    worst = worst_case_usd(GPT_4O_MINI, prompt_tokens_bound=1050, max_output_tokens=1024)

    assert worst == Decimal("0.0007719")  # (1050 x 0.15 + 1024 x 0.6) / 1e6
    assert worst == cost_usd(GPT_4O_MINI, prompt_tokens=1050, completion_tokens=1024)


def test_worst_case_covers_a_cached_price_above_the_input_price():
    odd = ModelPrice(input=Decimal("1"), cached_input=Decimal("2"), output=Decimal("0"))

    assert worst_case_usd(odd, prompt_tokens_bound=1_000_000, max_output_tokens=0) == 2


def test_override_prices_a_private_model(monkeypatch):
    monkeypatch.setenv("FLOWOPS_MODEL_PRICES", '{"openai:my-model": '
                       '{"input": 0.15, "output": 0.6, "cached_input": 0.075}}')

    assert price_for("openai:my-model") == GPT_4O_MINI


def test_override_wins_over_the_snapshot(monkeypatch):
    monkeypatch.setenv("FLOWOPS_MODEL_PRICES", '{"openai:gpt-4o": {"input": 1, "output": 2}}')

    assert price_for("openai:gpt-4o") == ModelPrice(
        input=Decimal("1"), cached_input=Decimal("1"), output=Decimal("2"))
    assert price_for("openai:gpt-4o-mini") == GPT_4O_MINI


def test_override_is_read_again_when_the_env_changes(monkeypatch):
    monkeypatch.setenv("FLOWOPS_MODEL_PRICES", '{"openai:llama3": {"input": 0, "output": 0}}')
    assert price_for("openai:llama3") == ModelPrice(input=0, cached_input=0, output=0)

    monkeypatch.setenv("FLOWOPS_MODEL_PRICES", '{"openai:llama3": {"input": 3, "output": 4}}')
    assert price_for("openai:llama3").input == 3

    monkeypatch.delenv("FLOWOPS_MODEL_PRICES")
    assert price_for("openai:llama3") is None


@pytest.mark.parametrize(("raw", "message"), [
    ('{"openai:my-model": {"input": -1, "output": 1}}',
     "FLOWOPS_MODEL_PRICES['openai:my-model']: input: Input should be greater than or equal"),
    ('{"openai:my-model": {"input": 1}}',
     "FLOWOPS_MODEL_PRICES['openai:my-model']: output: Field required"),
    ('{"openai:my-model": {"input": 1, "output": 1, "cache_input": 1}}',
     "FLOWOPS_MODEL_PRICES['openai:my-model']: cache_input: Extra inputs are not permitted"),
    ('{"openai:my-model": {"input": "cheap", "output": 1}}',
     "FLOWOPS_MODEL_PRICES['openai:my-model']: input: "),
    ('{"openai:my-model": 0.15}', "FLOWOPS_MODEL_PRICES['openai:my-model'] must be an object"),
    ('["openai:my-model"]', "FLOWOPS_MODEL_PRICES must be a JSON object"),
    ("{openai:my-model}", "FLOWOPS_MODEL_PRICES is not valid JSON"),
])
def test_bad_override_names_the_model_and_field(monkeypatch, raw, message):
    monkeypatch.setenv("FLOWOPS_MODEL_PRICES", raw)

    with pytest.raises(UserError) as exc:
        price_for("openai:gpt-4o-mini")

    assert str(exc.value).startswith(message)


def test_prices_come_from_the_bundled_snapshot_without_network(monkeypatch):
    # given no network, and a (fetched-looking) snapshot installed in genai_prices
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    pricing._snapshot.cache_clear()
    pricing._snapshot_model.cache_clear()
    try:
        # then the bundled price is used all the same
        assert price_for("openai:gpt-4o-mini") == GPT_4O_MINI
    finally:
        set_custom_snapshot(None)
