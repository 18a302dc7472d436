"""For tests: MLflow's image view read back, from the file names ``log_image`` gives, the way MLflow's UI reads
them."""

from tracelet_otel_mlflow._image_view import LoggedImage, logged_images

__all__ = ["LoggedImage", "logged_images"]
