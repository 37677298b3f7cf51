"""Account forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from wiki.accounts import MAX_PASSWORD, find_user, password_problem, username_problem


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    remember = BooleanField("Remember me on this device")
    next = HiddenField()


class RegisterForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    email = EmailField("Email (optional)", validators=[Optional(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired()])
    confirm = PasswordField(
        "Password again",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )

    def validate_username(self, field):
        problem = username_problem(field.data.strip())
        if problem:
            raise ValidationError(problem)
        if find_user(field.data.strip()):
            raise ValidationError("That username is taken.")

    def validate_email(self, field):
        value = (field.data or "").strip()
        if value and ("@" not in value or value.startswith("@") or value.endswith("@")):
            raise ValidationError("That does not look like an email address.")

    def validate_password(self, field):
        problem = password_problem(field.data, self.username.data or "")
        if problem:
            raise ValidationError(problem)


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField("New password", validators=[DataRequired()])
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )
