"""Package layout, the one thing pyproject.toml cannot say by itself.

The service's folders stay at the top of the repository (api/, worker/, db/, core/, client/) but
install under one namespace, `gisp_service.<folder>`, so no generic top-level name (`api`, `db`,
`client`) collides with another project's. The engine stays `gisp`. Editable installs map the
names the same way (setuptools' editable finder reads `package_dir`).
"""

from setuptools import find_packages, setup

SERVICE_FOLDERS = ("api", "worker", "db", "core", "client")

packages = find_packages(include=["gisp", "gisp.*"])
package_dir = {}
for folder in SERVICE_FOLDERS:
    name = f"gisp_service.{folder}"
    package_dir[name] = folder
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages, package_dir=package_dir)
