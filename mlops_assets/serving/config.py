"""The `serving:` block of sources.yaml: how `mlops-serve` routes between champion and
challenger, how fast it notices a new champion, and where the API key comes from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # champion: only the champion scores; shadow: the challenger scores the same requests and
    # only the champion's answer is returned; canary: canary_share of the requests get the
    # challenger's answer. Both answers are logged in shadow and canary
    mode: Literal["champion", "shadow", "canary"] = "champion"
    canary_share: float = Field(0.1, ge=0, le=1)
    # how often the registry's aliases and the feature tables are checked: a new champion is
    # served within this plus its load time (the issue asks for 30 s)
    poll_seconds: float = Field(5.0, gt=0, le=30)
    # the prediction log is written in batches this often (requests never wait for the disk)
    log_flush_seconds: float = Field(1.0, gt=0, le=60)
    # the environment variable holding the API key; unset or empty: no key is asked for
    api_key_env: str = "MLOPS_SERVE_API_KEY"
    max_instances: int = Field(1000, ge=1)  # rows one POST /v1/segments:score may carry
