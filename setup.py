"""The one thing pyproject.toml cannot say without setuptools' experimental table: the
optional C extension ``wsgate._relay`` (the plain tunnel relay, docs/performance.md).
``optional=True``: without a C compiler the install goes on and tunnels use the Python
relay."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wsgate._relay",
            sources=["src/wsgate/_relay.c"],
            extra_compile_args=["-Wall"],
            optional=True,
        )
    ]
)
