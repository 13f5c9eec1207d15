import pytest

from localmaker import ModelError


def test_embeds_each_input(localmaker_endpoint):
    predictor = localmaker_endpoint("tiny-qwen3", instance_type="ml.m5.large")

    answer = predictor.predict({"inputs": ["Ronaldo plays for Portugal", "Argentina won the World Cup"]})

    assert len(answer["embeddings"]) == 2
    assert all(len(vector) == answer["dimensions"] for vector in answer["embeddings"])


def test_empty_inputs_are_a_400(localmaker_endpoint):
    predictor = localmaker_endpoint("tiny-qwen3", instance_type="ml.m5.large")

    with pytest.raises(ModelError) as error:
        predictor.predict({"inputs": []})

    assert error.value.original_status_code == 400
    assert "inputs" in error.value.original_message
