"""The litserve peer: a LitAPI that encodes with sentence-transformers, batched by litserve itself.

Runs inside the litserve venv (benchmarks/peer_envs.py), not the project's, so it imports nothing of
localmaker or of the benchmarks package. ``POST /predict`` takes ``{"input": "<text>"}`` and answers
``{"embedding": [...]}``; litserve gathers up to 32 requests, waiting at most 10 ms, into one predict().

    <litserve venv>/bin/python benchmarks/litserve_app.py MODEL_DIR PORT [MAX_BATCH_SIZE] [BATCH_TIMEOUT_S]
"""

from __future__ import annotations

import sys

import litserve as ls


class SentenceEmbeddingAPI(ls.LitAPI):
    def __init__(self, model_dir: str, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_dir = model_dir

    def setup(self, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(self.model_dir, device="cpu")

    # decode_request and encode_response stay unannotated: litserve reads their annotations as the HTTP
    # request and response types, and would then look for the body in the query string.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return str(request["input"])

    def predict(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(list(texts), batch_size=len(texts), normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return [vector.tolist() for vector in vectors]

    def encode_response(self, vector):  # type: ignore[no-untyped-def]
        return {"embedding": vector}


def main(argv: list[str]) -> None:
    model_dir, port = argv[0], int(argv[1])
    max_batch_size = int(argv[2]) if len(argv) > 2 else 32
    batch_timeout = float(argv[3]) if len(argv) > 3 else 0.01
    api = SentenceEmbeddingAPI(model_dir, max_batch_size, batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False)


if __name__ == "__main__":
    main(sys.argv[1:])
