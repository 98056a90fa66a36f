"""A request's regions, shared by the HTTP API and the web UI: the schema and its Regions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_PROMPT = 4000


class RegionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    box: list[float] | None = Field(None, min_length=4, max_length=4)
    cell: str | None = None

    @model_validator(mode="after")
    def one_place(self):
        if (self.box is None) == (self.cell is None):
            raise ValueError("a region needs exactly one of 'box' and 'cell'")
        return self


def regions_of(specs: list[RegionSpec], base: int) -> list:
    """control.regions.Region of each spec, masks at the base resolution `base`."""
    from ..control.regions import Region, box_mask, named_box

    return [Region(r.prompt, box_mask(r.box if r.box else named_box(r.cell), base))
            for r in specs]
