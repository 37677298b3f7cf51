"""The editor form."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, SubmitField, TextAreaField
from wtforms.validators import Length, Optional


class EditForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=200)])
    body = TextAreaField("Text (Markdown)", validators=[Optional()])
    tags = StringField(
        "Tags",
        validators=[Optional(), Length(max=500)],
        description="Separated by spaces or commas, e.g. python django",
    )
    summary = StringField(
        "Edit summary",
        validators=[Optional(), Length(max=500)],
        description="Briefly, what you changed and why.",
    )
    base_revision_id = HiddenField()
    ask_review = BooleanField("Ask for review before publishing")
    preview = SubmitField("Preview")
    save = SubmitField("Save")

    def base_id(self) -> int | None:
        """The base revision id the editor started from, or None when missing or malformed."""
        raw = (self.base_revision_id.data or "").strip()
        return int(raw) if raw.isdigit() and len(raw) < 12 else None
