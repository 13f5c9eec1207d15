"""The shared facts: one progress-line parser, one hyperparameter codec, and shipped copies held equal.

``inference/`` ships inside model.tar.gz and cannot import localmaker, so it keeps copies of the names it
shares with the rest; these tests fail the moment one side changes alone. (``training/``'s copies are
checked in tests/training/test_shared_names.py.)
"""

from __future__ import annotations

import math

import pytest

from localmaker.spec import media_types, names
from localmaker.spec.hyperparameters import decode_as_text, decode_hyperparameter, encode_hyperparameters
from localmaker.spec.training_progress import format_progress, parse_progress
from tests.inference.handler_loader import sibling


def test_the_handler_reads_the_lora_file_the_training_writes():
    assert sibling("diffusion_pipeline").LORA_WEIGHTS == names.LORA_WEIGHTS_FILE


def test_the_handler_names_media_types_as_the_container_does():
    codecs = sibling("media_codecs")
    assert (codecs.JSON, codecs.NPY) == (media_types.JSON, media_types.NPY)


@pytest.mark.parametrize("header", [None, "", "application/json", "Application/JSON; charset=utf-8",
                                    " image/png ;q=1", "text/csv;header=present", ";", "x"])
def test_the_handler_parses_a_media_type_as_the_container_does(header):
    assert sibling("media_codecs").media_type(header) == media_types.media_type(header)


@pytest.mark.parametrize(("loss", "expected"), [(0.07145, 0.07145), (-1.5, -1.5), (1e-9, 0.0),
                                                (float("inf"), math.inf), (float("-inf"), -math.inf)])
def test_a_progress_line_reads_back_what_was_printed(loss, expected):
    progress = parse_progress("noise before " + format_progress(3, 40, loss) + " and after")
    assert progress is not None and (progress.step, progress.total) == (3, 40)
    assert progress.loss == pytest.approx(expected)


def test_a_nan_loss_is_still_progress():
    progress = parse_progress(format_progress(1, 2, float("nan")))
    assert progress is not None and math.isnan(progress.loss)


@pytest.mark.parametrize("line", ["", "step=1 total=2 loss=0.1", "[localmaker:progress] step=1 total=2",
                                  "[localmaker:progress] step=x total=2 loss=0.1",
                                  "[localmaker:progress] step=1 total=2 loss=lots"])
def test_other_lines_are_not_progress(line):
    assert parse_progress(line) is None


def test_hyperparameters_travel_as_the_sdk_sends_them():
    sent = {"learning_rate": 5e-3, "base_model": "tiny-sd", "center_crop": True, "resolution": 64, "ids": [1, 2]}
    encoded = encode_hyperparameters(sent)
    assert encoded == {"learning_rate": "0.005", "base_model": '"tiny-sd"', "center_crop": "true",
                       "resolution": "64", "ids": "[1, 2]"}
    assert {key: decode_hyperparameter(raw) for key, raw in encoded.items()} == sent
    assert [decode_as_text(encoded[key]) for key in ("base_model", "center_crop")] == ["tiny-sd", "true"]


def test_a_hand_written_hyperparameter_is_taken_as_it_is():
    assert decode_hyperparameter("tiny-sd") == "tiny-sd"
    assert decode_as_text("not json {") == "not json {"


def test_the_model_error_log_arn_names_the_region_it_ran_in():
    assert names.endpoint_log_group_arn("eu-west-1", "e") == (
        f"arn:aws:logs:eu-west-1:{names.LOCAL_ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/e")


def test_the_namespace_wrapper_binds_the_model_where_the_container_looks():
    # container_paths.py runs as a stdlib-only script (python -I -S), so it keeps its own copy.
    from localmaker.local_endpoint import container_paths

    assert container_paths.MODEL_DIR == names.SAGEMAKER_MODEL_DIR
