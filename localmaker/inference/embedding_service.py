"""Embedding and semantic-search requests answered by one loaded embedding model.

This is the object model_fn returns for an embedding model, so predict_fn can dispatch on its type.
Checks that need the model (the dimension limit, the prompt names, whether a corpus is packed) live
here; the request's shape was already checked by request_schema.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from corpus_index import CorpusIndex, DocumentId, build_index, find_corpus_file, load_corpus
from embedding_model import EmbeddingModel
from embedding_pooling import l2_normalize, truncate_dimensions
from handler_settings import HandlerSettings
from request_schema import EmbedParameters, EmbedRequest, SearchRequest
from serving_errors import InvalidInput

logger = logging.getLogger(__name__)

QUERY_PROMPT_NAME = "query"


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for an embedding request, row ``i`` for input ``i``."""

    embeddings: np.ndarray
    tokens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "embeddings": self.embeddings.tolist(),
            "dimensions": int(self.embeddings.shape[1]),
            "usage": {"tokens": self.tokens},
        }


@dataclass(frozen=True)
class SearchHit:
    rank: int
    index: int
    score: float
    text: str
    id: DocumentId | None = None

    def to_json(self) -> dict[str, Any]:
        hit: dict[str, Any] = {"rank": self.rank, "index": self.index, "score": self.score, "text": self.text}
        if self.id is not None:
            hit["id"] = self.id
        return hit


@dataclass(frozen=True)
class SearchResult:
    """Hits best first."""

    hits: list[SearchHit]

    def to_json(self) -> dict[str, Any]:
        return {"results": [hit.to_json() for hit in self.hits]}


class EmbeddingService:
    """An embedding model plus the optional corpus packed beside it."""

    def __init__(self, model: EmbeddingModel, corpus: CorpusIndex | None = None) -> None:
        self.model = model
        self.corpus = corpus

    @classmethod
    def load(cls, model_dir: Path, settings: HandlerSettings) -> EmbeddingService:
        model = EmbeddingModel.load(model_dir, settings)
        corpus_file = find_corpus_file(model_dir)
        corpus = None
        if corpus_file is not None:
            corpus = build_index(load_corpus(corpus_file), model, model_dir, settings.cache_dir)
        return cls(model, corpus)

    def handle(self, request: EmbedRequest | SearchRequest) -> EmbeddingResult | SearchResult:
        if isinstance(request, SearchRequest):
            return self.search(request)
        return self.embed(request)

    def _check_dimensions(self, parameters: EmbedParameters) -> None:
        if parameters.dimensions is not None and parameters.dimensions > self.model.dimension:
            raise InvalidInput(
                f'"parameters.dimensions" is {parameters.dimensions} but this model\'s embeddings have '
                f"{self.model.dimension}: send a value from 1 to {self.model.dimension}, or omit it."
            )

    def _prompt(self, name: str | None) -> str | None:
        if name is None:
            return None
        prompts = self.model.prompts
        if name not in prompts:
            available = ", ".join(sorted(prompts)) if prompts else "none"
            raise InvalidInput(
                f'"parameters.prompt_name" {name!r} is not one of this model\'s prompts '
                f"(available: {available}): use one of them or omit it."
            )
        return prompts[name]

    def embed(self, request: EmbedRequest) -> EmbeddingResult:
        params = request.parameters
        self._check_dimensions(params)
        output = self.model.embed(request.inputs, prompt=self._prompt(params.prompt_name))
        vectors = l2_normalize(output.vectors) if params.normalize else output.vectors
        if params.dimensions is not None:
            vectors = truncate_dimensions(vectors, params.dimensions, normalize=params.normalize)
        return EmbeddingResult(embeddings=vectors.astype(np.float32, copy=False), tokens=output.token_count)

    def search(self, request: SearchRequest) -> SearchResult:
        params = request.parameters
        self._check_dimensions(params)
        prompt_name = params.prompt_name
        if prompt_name is None and QUERY_PROMPT_NAME in self.model.prompts:
            prompt_name = QUERY_PROMPT_NAME
        ids: list[DocumentId | None]
        if request.documents is not None:
            texts = request.documents
            ids = [None] * len(texts)
            doc_vectors = l2_normalize(self.model.embed(texts).vectors)
        elif self.corpus is not None:
            texts, ids, doc_vectors = self.corpus.texts, self.corpus.ids, self.corpus.vectors
        else:
            raise InvalidInput(
                '"documents" is missing and this model has no packed corpus: send "documents": [...] '
                "with the texts to search, or pack corpus.jsonl or corpus.txt into the model directory."
            )
        query_vector = l2_normalize(self.model.embed([request.query], prompt=self._prompt(prompt_name)).vectors)
        if params.dimensions is not None:
            query_vector = truncate_dimensions(query_vector, params.dimensions)
            doc_vectors = truncate_dimensions(doc_vectors, params.dimensions)
        scores = (doc_vectors @ query_vector.T)[:, 0]
        top_k = min(request.top_k, len(texts))
        order = np.argsort(-scores, kind="stable")[:top_k]
        hits = [
            SearchHit(rank=rank, index=int(i), score=float(scores[i]), text=texts[i], id=ids[i])
            for rank, i in enumerate(order, start=1)
        ]
        return SearchResult(hits)
