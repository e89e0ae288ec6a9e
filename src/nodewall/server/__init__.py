"""The control plane: FastAPI app over the store, serving each node its compiled policy.

`app.create_app(store)` builds the app from the routers in `routes/`; `run.run(url, host, port)`
serves it with uvicorn. The package never touches a kernel and never logs request bodies or
customer text."""
