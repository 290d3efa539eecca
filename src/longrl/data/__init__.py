"""Data: record schema, reading and validation, prompts, preparation into curriculum phases, synthetic data."""

from longrl.data.io import DataError, Row, RowError, read_rows
from longrl.data.prepare import PrepareConfig, assign_phase, prepare
from longrl.data.prompts import QWENLONG_TEMPLATE, chat_prompt, parse_user_prompt, user_prompt
from longrl.data.schema import QARecord, SFTRecord, canonical_fields
from longrl.data.synthetic import GenerateConfig, generate, generate_records

__all__ = [
    "QWENLONG_TEMPLATE",
    "DataError",
    "GenerateConfig",
    "PrepareConfig",
    "QARecord",
    "Row",
    "RowError",
    "SFTRecord",
    "assign_phase",
    "canonical_fields",
    "chat_prompt",
    "generate",
    "generate_records",
    "parse_user_prompt",
    "prepare",
    "read_rows",
    "user_prompt",
]
