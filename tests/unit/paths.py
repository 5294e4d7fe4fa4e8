"""Where the tests find the repository and the data beside it, wherever a test file sits in the tree."""

from pathlib import Path

# The checkout: the first folder above this file that holds pyproject.toml.
REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
GOLDEN = REPO / "tests" / "golden"
GOLDEN_MODEL = GOLDEN / "model_v1"
# ../shared sits beside the checkout (CI too); the Azure sample is test data only, never packaged.
SHARED_AZURE = REPO.parent / "shared" / "data" / "azure2019"
