from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("fj_opsapp", "0001_initial")]

    operations = [
        migrations.AddField(model_name="gadget", name="colour", field=models.CharField(default="", max_length=20)),
    ]
