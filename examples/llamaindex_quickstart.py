"""LlamaIndex's Qdrant quickstart with a CDE model: the embedding class is the only change.

The Hugging Face version reads ``HuggingFaceEmbedding(model_name=...)`` and
``QdrantVectorStore``; here they are ``CDEEmbedding`` and ``CDEQdrantVectorStore``. The
collection is created on the first insert, storing a context fitted on the inserted nodes;
``from_vector_store`` restores it.

    python examples/llamaindex_quickstart.py --model ./cde-small-v2
"""

from __future__ import annotations

import argparse
import shutil

from llama_index.core import Document, StorageContext, VectorStoreIndex
from qdrant_client import QdrantClient

from cde_rag_llamaindex import CDEEmbedding, CDEQdrantVectorStore

DOCS = [
    Document(text="Toast cumin seeds in a dry pan, then grind them."),
    Document(text="Rotate API keys and never commit them to git."),
    Document(text="Prune roses in late winter before the buds swell."),
]

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="jxm/cde-small-v2")
parser.add_argument("--path", default="./qdrant_llamaindex_quickstart")
args = parser.parse_args()
shutil.rmtree(args.path, ignore_errors=True)

client = QdrantClient(path=args.path)
vector_store = CDEQdrantVectorStore(client=client, collection_name="quickstart")
storage_context = StorageContext.from_defaults(vector_store=vector_store)
index = VectorStoreIndex.from_documents(
    DOCS, storage_context=storage_context, embed_model=CDEEmbedding(model_name=args.model)
)
print("stored context", vector_store.fingerprint[:12])
client.close()

client = QdrantClient(path=args.path)
vector_store = CDEQdrantVectorStore(client=client, collection_name="quickstart")
index = VectorStoreIndex.from_vector_store(
    vector_store, embed_model=CDEEmbedding(model_name=args.model)
)
print("restored context", vector_store.fingerprint[:12])
for hit in index.as_retriever(similarity_top_k=1).retrieve("keeping secrets out of git"):
    print("hit:", hit.node.get_content())
client.close()
