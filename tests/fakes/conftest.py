"""Expose the fake OpenAI server fixtures to the tests in this directory."""

from tests.fakes.fixtures import fake_openai, fake_openai_process  # noqa: F401
