"""Settings section: SSH deployment ([deploy]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DeploySettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")
