"""Parameter sweeps against an image endpoint: every guidance × steps combination, timed.

This reproduces the seed report's experiments: guidance trades creativity for prompt fidelity, and more
denoising steps trade speed for detail. Each cell is generated with the same seed, so the only thing
that changes across the sheet is the parameter under study. One untimed request warms the endpoint up
first (lazy initialisation, first-call allocations), so the first cell's seconds compare with the others'.
"""

from __future__ import annotations

import base64
import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from localmaker.deploy.contact_sheet import SheetCell, render_contact_sheet
from localmaker.deploy.deserializers import JSONDeserializer
from localmaker.deploy.predictor import FakePredictor
from localmaker.deploy.serializers import JSONSerializer
from localmaker.deploy.session import Session
from localmaker.logging_setup import progress_bar


@dataclass(frozen=True)
class SweepSettings:
    prompt: str
    guidance_scales: Sequence[float]
    step_counts: Sequence[int]
    negative_prompt: str | None = None
    size: int | None = None
    seed: int = 42
    scheduler: str | None = None

    def request(self, guidance: float, steps: int) -> dict[str, Any]:
        parameters: dict[str, Any] = {"guidance_scale": guidance, "num_inference_steps": steps, "seed": self.seed}
        if self.negative_prompt:
            parameters["negative_prompt"] = self.negative_prompt
        if self.size:
            parameters["height"] = parameters["width"] = self.size
        if self.scheduler:
            parameters["scheduler"] = self.scheduler
        return {"inputs": self.prompt, "parameters": parameters}


@dataclass(frozen=True)
class SweepResult:
    guidance: float
    steps: int
    seconds: float  # the endpoint's own generation time, free of HTTP and encoding overhead
    per_step_ms: float
    image: Image.Image
    scheduler: str = ""  # the effective values the endpoint answered with ("parameters"), for the header
    width: int = 0
    height: int = 0


def run_sweep(session: Session, endpoint_name: str, settings: SweepSettings,
              show_progress: bool = True) -> list[SweepResult]:
    """Generate every combination, rows (guidance) first, with a progress bar on stderr; one untimed
    warm-up request (the first guidance, the fewest steps) goes first."""
    predictor = FakePredictor(endpoint_name, session, JSONSerializer(), JSONDeserializer())
    combinations = [(g, s) for g in settings.guidance_scales for s in settings.step_counts]
    results = []
    with progress_bar(total=len(combinations), desc="sweep", unit="image", disable=not show_progress) as bar:
        if combinations:
            bar.set_postfix_str("warming up")
            predictor.predict(settings.request(settings.guidance_scales[0], min(settings.step_counts)))
        for guidance, steps in combinations:
            bar.set_postfix_str(f"guidance={guidance:g} steps={steps}")
            started = time.perf_counter()
            answer = predictor.predict(settings.request(guidance, steps))
            timings = answer.get("timings", {})
            image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
            image.load()
            effective = answer.get("parameters") or {}
            results.append(SweepResult(
                guidance=guidance, steps=steps,
                seconds=float(timings.get("total_s", time.perf_counter() - started)),
                per_step_ms=float(timings.get("per_step_ms", 0.0)), image=image,
                scheduler=str(effective.get("scheduler") or settings.scheduler or ""),
                width=int(effective.get("width") or image.width), height=int(effective.get("height") or image.height)))
            bar.update(1)
    return results


def contact_sheet(results: Sequence[SweepResult], settings: SweepSettings) -> Image.Image:
    rows = {g: i for i, g in enumerate(settings.guidance_scales)}
    columns = {s: i for i, s in enumerate(settings.step_counts)}
    cells = [SheetCell(rows[r.guidance], columns[r.steps], r.image,
                       f"g={r.guidance:g}, {r.steps} steps\n{r.seconds:.2f} s") for r in results]
    return render_contact_sheet(cells, [f"guidance {g:g}" for g in settings.guidance_scales],
                                [f"{s} steps" for s in settings.step_counts], sweep_title(settings, results))


def sweep_title(settings: SweepSettings, results: Sequence[SweepResult] = ()) -> str:
    """The prompt, then what every cell shares: seed, scheduler and size (as the endpoint used them)."""
    negative = f"  negative=\"{settings.negative_prompt}\"" if settings.negative_prompt else ""
    return f"\"{settings.prompt}\"  {shared_settings(settings, results)}{negative}"


def shared_settings(settings: SweepSettings, results: Sequence[SweepResult]) -> str:
    """``seed=42  scheduler=pndm  64x64``: the scheduler and size the endpoint reported, else those asked for
    (else the images' size); a scheduler nobody named is left out rather than guessed."""
    first = results[0] if results else None
    parts = [f"seed={settings.seed}"]
    if scheduler := (first.scheduler if first else "") or settings.scheduler:
        parts.append(f"scheduler={scheduler}")
    if first and first.width and first.height:
        parts.append(f"{first.width}x{first.height}")
    elif settings.size:
        parts.append(f"{settings.size}x{settings.size}")
    elif first is not None:
        parts.append(f"{first.image.width}x{first.image.height}")
    return "  ".join(parts)


def write_table(results: Sequence[SweepResult], path: Path, settings: SweepSettings | None = None) -> Path:
    """Seconds per image for each setting: CSV for a ``.csv`` path, else a markdown table (under a line that
    names the prompt, seed, scheduler and size when ``settings`` are given)."""
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["guidance_scale", "num_inference_steps", "seconds_per_image", "ms_per_step"])
            for r in results:
                writer.writerow([f"{r.guidance:g}", r.steps, f"{r.seconds:.4f}", f"{r.per_step_ms:.2f}"])
        return path
    lines = [sweep_title(settings, results), ""] if settings is not None else []
    lines += ["| guidance_scale | num_inference_steps | seconds per image | ms per step |",
              "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.guidance:g} | {r.steps} | {r.seconds:.3f} | {r.per_step_ms:.1f} |" for r in results]
    path.write_text("\n".join(lines) + "\n")
    return path
