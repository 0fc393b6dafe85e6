"""The AI API's wire shapes, shared by the gateway that answers with them and the client that reads them:
``records`` holds one pydantic model per answer (camelCase on the wire, snake_case in Python), so the
gateway's ``/openapi.json`` and the client's results cannot drift apart."""
