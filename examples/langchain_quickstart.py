"""LangChain's Qdrant quickstart with a CDE model: the embedding class is the only change.

The Hugging Face version reads ``HuggingFaceEmbeddings(model_name=...)`` and
``QdrantVectorStore``; here they are ``CDEEmbeddings`` and ``CDEQdrantVectorStore``. The new
collection stores a context fitted on the documents; reopening restores it.

    python examples/langchain_quickstart.py --model ./cde-small-v2
"""

from __future__ import annotations

import argparse

from langchain_core.documents import Document

from cde_rag_langchain import CDEEmbeddings, CDEQdrantVectorStore

DOCS = [
    Document(page_content="Toast cumin seeds in a dry pan, then grind them.", metadata={"n": 1}),
    Document(page_content="Rotate API keys and never commit them to git.", metadata={"n": 2}),
    Document(page_content="Prune roses in late winter before the buds swell.", metadata={"n": 3}),
]

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="jxm/cde-small-v2")
parser.add_argument("--path", default="./qdrant_langchain_quickstart")
args = parser.parse_args()

embeddings = CDEEmbeddings(model_name=args.model)
store = CDEQdrantVectorStore.from_documents(
    DOCS, embeddings, path=args.path, collection_name="quickstart", force_recreate=True
)
print("stored context", store.fingerprint[:12])
store.client.close()

reopened = CDEQdrantVectorStore.from_existing_collection(
    embedding=CDEEmbeddings(model_name=args.model), path=args.path, collection_name="quickstart"
)
print("restored context", reopened.fingerprint[:12])
for doc in reopened.similarity_search("keeping secrets out of git", k=1):
    print("hit:", doc.page_content)
reopened.client.close()
