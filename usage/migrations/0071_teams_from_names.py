"""Teams from the names already in use: one Team per name the keys and the daily rollup carry
(names differing only in case or spacing are one team, spelt as a key has it, else as first found),
and each key with a team gets an assignment from its first request. Records keep their names."""

from django.db import migrations


def teams_from_names(apps, schema_editor):
    Account = apps.get_model("usage", "Account")
    ApiKey = apps.get_model("usage", "ApiKey")
    DailyUsage = apps.get_model("usage", "DailyUsage")
    Team = apps.get_model("usage", "Team")
    KeyTeamAssignment = apps.get_model("usage", "KeyTeamAssignment")
    for account in Account.objects.all():
        names = list(ApiKey.objects.filter(account=account).exclude(team="").values_list("team", flat=True))
        names += DailyUsage.objects.filter(account=account).exclude(team="").values_list("team", flat=True).distinct()
        teams = {}
        for name in names:
            cleaned = " ".join(name.split())[:100]
            if cleaned and cleaned.casefold() not in teams:
                teams[cleaned.casefold()] = Team.objects.create(account=account, name=cleaned)
        for key in ApiKey.objects.filter(account=account).exclude(team=""):
            team = teams.get(" ".join(key.team.split()).casefold())
            KeyTeamAssignment.objects.create(api_key=key, team=team, starts_at=None)


class Migration(migrations.Migration):
    dependencies = [("usage", "0070_teams")]

    operations = [migrations.RunPython(teams_from_names, migrations.RunPython.noop)]
