"""Prompt token counts and bounds, against tiktoken's and OpenAI's published counts."""

import math
from decimal import Decimal

import pytest

from flowops.ai import tokens
from flowops.ai.tokens import count_prompt_tokens, prompt_bound

# The OpenAI cookbook's "How to count tokens with tiktoken" example, whose prompt the
# OpenAI API billed at 129 tokens on gpt-3.5-turbo and gpt-4, 124 on gpt-4o and gpt-4o-mini.
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that "
                                  "translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user",
     "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant",
     "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user",
     "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
                "for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean "
                                "for the client deliverable."},
]

# The cookbook's tools example: the API billed 101 prompt tokens on gpt-4o and gpt-4o-mini.
WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "description": "The unit of temperature to return",
                 "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}]
WEATHER_MESSAGES = [
    {"role": "system",
     "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def hello(content="hello world", **fields):
    return [{"role": "user", "content": content, **fields}]


@pytest.mark.parametrize(("encoding", "ids"), [
    ("cl100k_base", [15339, 1917]),
    ("o200k_base", [24912, 2375]),
])
def test_hello_world_is_two_tokens_as_in_tiktoken(encoding, ids):
    assert tokens._encoder(encoding).encode("hello world") == ids


def test_cl100k_matches_the_cookbook_ids():
    assert tokens._encoder("cl100k_base").encode("tiktoken is great!") == [
        83, 1609, 5963, 374, 2294, 0]


@pytest.mark.parametrize(("model", "encoding"), [
    ("openai:gpt-4o-mini", "o200k_base"),
    ("openai:gpt-4o-2024-08-06", "o200k_base"),
    ("openai:gpt-4.1-nano", "o200k_base"),
    ("openai:gpt-5", "o200k_base"),
    ("openai:o3-mini", "o200k_base"),
    ("openai:ft:gpt-4.1-mini-2025-04-14:acme::abc123", "o200k_base"),
    ("openai:gpt-4", "cl100k_base"),
    ("openai:gpt-4-turbo", "cl100k_base"),
    ("openai:gpt-3.5-turbo-0125", "cl100k_base"),
    ("openai:llama3", None),
    ("openai:gpt-oss-20b", None),    # o200k_harmony, not shipped offline
    ("ollama:gpt-4o", None),          # another provider: its tokenizer is not ours to assume
    ("gpt-4o", None),
])
def test_encoding_follows_tiktokens_model_table(model, encoding):
    assert tokens._encoding_for(model) == encoding


def test_framing_adds_three_per_message_and_three_for_the_reply():
    # 3 (message) + 1 ("user") + 2 ("hello world") + 3 (reply priming)
    assert count_prompt_tokens("openai:gpt-4o", hello()) == 9
    assert count_prompt_tokens("openai:gpt-4", hello()) == 9
    assert count_prompt_tokens("openai:gpt-4o", hello() * 2) == 9 + 6


def test_name_adds_its_tokens_and_one_more():
    # "bob" is one token, plus one for having a name at all
    assert count_prompt_tokens("openai:gpt-4o", hello(name="bob")) == 9 + 2


@pytest.mark.parametrize(("model", "billed"), [
    ("openai:gpt-4", 129),
    ("openai:gpt-3.5-turbo", 129),
    ("openai:gpt-4o", 124),
    ("openai:gpt-4o-mini", 124),
])
def test_count_matches_what_openai_billed_for_the_cookbook_prompt(model, billed):
    assert count_prompt_tokens(model, COOKBOOK_MESSAGES) == billed


def test_tools_json_counts_at_least_what_openai_billed():
    count = count_prompt_tokens("openai:gpt-4o", WEATHER_MESSAGES, tools=WEATHER_TOOLS)

    assert count >= 101


def test_schema_adds_its_json():
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    schema_tokens = len(tokens._encoder("o200k_base").encode(tokens._json(schema)))

    assert count_prompt_tokens("openai:gpt-4o", hello(), schema=schema) == 9 + schema_tokens


def test_text_parts_count_as_text():
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]

    assert count_prompt_tokens("openai:gpt-4o", hello(parts)) == 9


def test_special_token_text_is_counted_as_plain_text():
    # The API treats "<|endoftext|>" in a message as text; counting must not raise.
    assert count_prompt_tokens("openai:gpt-4o", hello("<|endoftext|>")) > 9


def test_unknown_tokenizer_counts_utf8_bytes_plus_framing():
    # 3 + 4 ("user") + 11 ("hello world") + 3
    assert count_prompt_tokens("openai:llama3", hello()) == 21
    # "é" is two bytes in UTF-8, "日本" six
    assert count_prompt_tokens("ollama:llama3", hello("é日本")) == 3 + 4 + 8 + 3


def test_unknown_tokenizer_counts_schema_and_tools_bytes():
    count = count_prompt_tokens("openai:llama3", WEATHER_MESSAGES, tools=WEATHER_TOOLS)

    assert count == (count_prompt_tokens("openai:llama3", WEATHER_MESSAGES)
                     + len(tokens._json(WEATHER_TOOLS).encode()))


@pytest.mark.parametrize("messages", [hello(), COOKBOOK_MESSAGES, hello("x" * 997)])
def test_bound_is_ceil_of_105_percent_of_the_count(messages):
    count = count_prompt_tokens("openai:gpt-4o", messages)
    bound = prompt_bound("openai:gpt-4o", messages)

    assert bound >= count
    assert bound == math.ceil(Decimal("1.05") * count)


def test_bound_with_tools_covers_what_openai_billed():
    assert prompt_bound("openai:gpt-4o-mini", WEATHER_MESSAGES, tools=WEATHER_TOOLS) >= 101


def test_bound_of_unknown_tokenizer_is_the_byte_count():
    assert prompt_bound("openai:llama3", hello()) == count_prompt_tokens("openai:llama3", hello())


def test_byte_count_bounds_the_token_count():
    assert (count_prompt_tokens("openai:llama3", COOKBOOK_MESSAGES)
            >= count_prompt_tokens("openai:gpt-4o", COOKBOOK_MESSAGES))


def test_encoders_are_loaded_once_per_process():
    assert tokens._encoder("o200k_base") is tokens._encoder("o200k_base")
