"""Checkpoint JSON: encoding and decoding through the annotations (CONTRACTS.md §3)."""

import datetime as dt
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from flowops import InputValidationError
from flowops._codec import canonical_json, decode, digest, encode, validate_input


class Order(BaseModel):
    id: int
    placed: dt.datetime
    lines: list[str] = []


class Widget:
    pass


def test_a_model_round_trips_through_its_annotation():
    order = Order(id=7, placed=dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC), lines=["a"])

    data = encode(order, Order)

    assert data == {"id": 7, "placed": "2024-01-02T03:04:00Z", "lines": ["a"]}
    assert decode(data, Order) == order


def test_a_list_of_models_round_trips():
    orders = [Order(id=1, placed=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))]

    assert decode(encode(orders, list[Order]), list[Order]) == orders


def test_without_annotation_values_become_plain_json():
    assert encode({"u": uuid.UUID(int=1), "d": dt.date(2024, 5, 6)}) == {
        "u": "00000000-0000-0000-0000-000000000001", "d": "2024-05-06"}
    assert decode({"x": [1]}, Any) == {"x": [1]}
    assert decode("text", None) == "text"


@pytest.mark.parametrize("annotation", [Any, Widget])
def test_a_value_that_cannot_be_encoded_names_its_type(annotation):
    with pytest.raises(TypeError, match=r"^cannot encode a Widget as JSON: "):
        encode(Widget(), annotation)


def test_validate_input_names_the_expected_type_and_the_problem():
    with pytest.raises(InputValidationError) as caught:
        validate_input("abc", int, what="input")

    assert str(caught.value) == ("input does not fit int: input: Input should be a valid "
                                 "integer, unable to parse string as an integer")


def test_validate_input_names_missing_fields():
    with pytest.raises(InputValidationError) as caught:
        validate_input({"id": 1}, Order, what="input")

    assert str(caught.value) == "input does not fit Order: placed: Field required"


def test_validate_input_coerces_to_the_annotation():
    assert validate_input("5", int, what="input") == 5
    assert validate_input({"id": 1, "placed": "2024-01-01T00:00:00Z"}, Order,
                          what="input") == Order(id=1, placed=dt.datetime(2024, 1, 1,
                                                                          tzinfo=dt.UTC))


def test_canonical_json_sorts_keys_and_keeps_unicode():
    assert canonical_json({"b": 1, "a": ["é", 2]}) == '{"a":["é",2],"b":1}'
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    assert digest([1]) != digest([2])
