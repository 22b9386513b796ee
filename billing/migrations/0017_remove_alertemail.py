# The alert emails live on as notifications and deliveries (0016).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0016_alert_emails_to_deliveries")]

    operations = [migrations.DeleteModel(name="AlertEmail")]
