"""Validates an OpenAPI document with `openapi-spec-validator`, the reference validator of the
OpenAPI specification in Python (the document's version, 3.0, 3.1 or 3.2, picks the rules).

Input (stdin): the document. Output: {"version": "3.1.0", "errors": ["<path>: <message>", ...]}
(at most 50; none when the document is valid).
"""

import json
import sys

from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator, OpenAPIV32SpecValidator

VALIDATORS = {"3.0": OpenAPIV30SpecValidator, "3.1": OpenAPIV31SpecValidator, "3.2": OpenAPIV32SpecValidator}


def main() -> None:
    document = json.load(sys.stdin)
    version = str(document.get("openapi", ""))
    validator = VALIDATORS.get(version[:3])
    if validator is None:
        errors = [f"openapi: unknown version {version!r}"]
    else:
        errors = []
        try:
            for error in validator(document).iter_errors():
                where = "/".join(str(part) for part in error.absolute_path) or "(root)"
                errors.append(f"{where}: {error.message}"[:500])
                if len(errors) == 50:
                    break
        except Exception as error:  # a document too broken to walk is invalid too
            errors.append(f"the validator cannot walk the document: {error!r}"[:500])
    json.dump({"version": version, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
