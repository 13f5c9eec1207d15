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
from embedding_model import EmbeddingModel, TokenizedText
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


@dataclass(frozen=True)
class PreparedRequest:
    """A checked request with its texts tokenized (for a search: the query first, then any documents)."""

    request: EmbedRequest | SearchRequest
    texts: list[TokenizedText]
    packed: bool = False  # the model runs packed texts, so a batch's lengths cost it nothing

    @property
    def batch_length(self) -> int | None:
        """What this request pads a forward pass to: localmaker's model thread batches like with like.

        None for a packed model: its batches then simply take the requests in arrival order.
        """
        if self.packed:
            return None
        return max((text.length for text in self.texts), default=0)


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
        model.spread_over_lanes()
        return cls(model, corpus)

    def handle(self, request: EmbedRequest | SearchRequest) -> EmbeddingResult | SearchResult:
        return self.run([self.prepare(request)])[0]

    def prepare(self, request: EmbedRequest | SearchRequest) -> PreparedRequest:
        """Check the request against the model and tokenize its texts: everything but the forward pass."""
        params = request.parameters
        self._check_dimensions(params)
        if isinstance(request, EmbedRequest):
            return self._prepared(request, self.model.tokenize(request.inputs, self._prompt(params.prompt_name)))
        prompt_name = params.prompt_name
        if prompt_name is None and QUERY_PROMPT_NAME in self.model.prompts:
            prompt_name = QUERY_PROMPT_NAME
        query = self.model.tokenize([request.query], self._prompt(prompt_name))
        if request.documents is not None:
            return self._prepared(request, query + self.model.tokenize(request.documents))
        if self.corpus is None:
            raise InvalidInput(
                '"documents" is missing and this model has no packed corpus: send "documents": [...] '
                "with the texts to search, or pack corpus.jsonl or corpus.txt into the model directory."
            )
        return self._prepared(request, query)

    def _prepared(self, request: EmbedRequest | SearchRequest, texts: list[TokenizedText]) -> PreparedRequest:
        return PreparedRequest(request, texts, packed=self.model.packed)

    def run(self, prepared: list[PreparedRequest]) -> list[EmbeddingResult | SearchResult]:
        """Answer prepared requests with one pass over all their texts, then split the rows back."""
        texts = [text for item in prepared for text in item.texts]
        vectors = self.model.embed_tokens(texts).vectors
        results: list[EmbeddingResult | SearchResult] = []
        start = 0
        for item in prepared:
            rows = vectors[start:start + len(item.texts)]
            tokens = sum(text.length for text in item.texts)
            start += len(item.texts)
            if isinstance(item.request, SearchRequest):
                results.append(self._search(item.request, rows))
            else:
                results.append(self._embedding(item.request.parameters, rows, tokens))
        return results

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

    @staticmethod
    def _embedding(params: EmbedParameters, vectors: np.ndarray, tokens: int) -> EmbeddingResult:
        if params.normalize:
            vectors = l2_normalize(vectors)
        if params.dimensions is not None:
            vectors = truncate_dimensions(vectors, params.dimensions, normalize=params.normalize)
        return EmbeddingResult(embeddings=vectors.astype(np.float32, copy=False), tokens=tokens)

    def _search(self, request: SearchRequest, vectors: np.ndarray) -> SearchResult:
        """Rank the documents sent (rows after the query's) or the packed corpus against the query."""
        params = request.parameters
        query_vector = l2_normalize(vectors[:1])
        ids: list[DocumentId | None]
        if request.documents is not None:
            texts, ids, doc_vectors = request.documents, [None] * len(request.documents), l2_normalize(vectors[1:])
        else:
            assert self.corpus is not None  # prepare() refused the request otherwise
            texts, ids, doc_vectors = self.corpus.texts, self.corpus.ids, self.corpus.vectors
        if params.dimensions is not None:
            query_vector = truncate_dimensions(query_vector, params.dimensions)
            doc_vectors = truncate_dimensions(doc_vectors, params.dimensions)
        scores = (doc_vectors @ query_vector.T)[:, 0]  # one matrix product over the whole corpus
        top_k = min(request.top_k, len(texts))
        order = np.argsort(-scores, kind="stable")[:top_k]
        hits = [
            SearchHit(rank=rank, index=int(i), score=float(scores[i]), text=texts[i], id=ids[i])
            for rank, i in enumerate(order, start=1)
        ]
        return SearchResult(hits)
