"""The web page's texts in English and Russian; the language from ``?lang=``, the cookie, or the
browser's Accept-Language (first supported one), else English."""

from __future__ import annotations

from typing import Final

LANGS: Final = ("en", "ru")

_EN: Final[dict[str, str]] = {
    "title": "Contact quality",
    "login": "Log in",
    "logout": "Log out",
    "username": "User name",
    "password": "Password",
    "login_failed": "Wrong user name or password.",
    "contacts": "Contacts",
    "figures": "Figures",
    "reasons": "Reasons",
    "alerts": "Alerts",
    "devices": "Devices",
    "filter": "Filter",
    "clear": "Clear",
    "site": "Site",
    "device": "Device",
    "staff": "Staff",
    "mode": "Mode",
    "ended_by": "Ended by",
    "reason": "Reason",
    "from": "From",
    "to": "To",
    "tags": "Tags",
    "has_audio": "Audio",
    "any": "any",
    "yes": "yes",
    "no": "no",
    "start": "Start",
    "duration": "Duration",
    "none_found": "No contacts match.",
    "next_page": "More",
    "previous": "Previous",
    "next": "Next",
    "back": "Back to the list",
    "events": "Events",
    "video": "Video archive",
    "checklist": "Reasons for dissatisfaction",
    "note": "Note",
    "save": "Save",
    "saved": "Saved.",
    "no_audio": "No audio for this contact.",
    "offset": "at",
    "by": "Group by",
    "day": "day",
    "hour": "hour",
    "show": "Show",
    "total": "Total",
    "not_meaningful": "not meaningful (force majeure above threshold)",
    "definitions": "Definitions",
    "contacts_count": "Contacts",
    "count": "Contacts",
    "rule": "Rule",
    "at": "At",
    "text": "Text",
    "said": "Words said",
    "said_hint": "The transcript holds every one of these words, in any form",
    "online": "Online",
    "offline": "OFFLINE",
    "last_seen": "Last seen",
    "version": "Version",
    "outbox": "Outbox",
    "free_disk": "Free disk",
    "no_rows": "Nothing yet.",
    "timezone": "Time zone",
}

_RU: Final[dict[str, str]] = {
    "title": "Качество контактов",
    "login": "Войти",
    "logout": "Выйти",
    "username": "Имя пользователя",
    "password": "Пароль",
    "login_failed": "Неверное имя или пароль.",
    "contacts": "Контакты",
    "figures": "Показатели",
    "reasons": "Причины",
    "alerts": "Оповещения",
    "devices": "Устройства",
    "filter": "Показать",
    "clear": "Сбросить",
    "site": "Точка",
    "device": "Устройство",
    "staff": "Сотрудник",
    "mode": "Режим",
    "ended_by": "Завершён",
    "reason": "Причина",
    "from": "С",
    "to": "По",
    "tags": "Метки",
    "has_audio": "Запись",
    "any": "любая",
    "yes": "есть",
    "no": "нет",
    "start": "Начало",
    "duration": "Длительность",
    "none_found": "Нет подходящих контактов.",
    "next_page": "Ещё",
    "previous": "Предыдущий",
    "next": "Следующий",
    "back": "К списку",
    "events": "События",
    "video": "Видеоархив",
    "checklist": "Причины недовольства",
    "note": "Комментарий",
    "save": "Сохранить",
    "saved": "Сохранено.",
    "no_audio": "У этого контакта нет записи.",
    "offset": "на",
    "by": "Группировать по",
    "day": "дням",
    "hour": "часам",
    "show": "Показать",
    "total": "Итого",
    "not_meaningful": "не показательно (форс-мажор выше порога)",
    "definitions": "Определения",
    "contacts_count": "Контакты",
    "count": "Контактов",
    "rule": "Правило",
    "at": "Когда",
    "text": "Текст",
    "said": "Слова в записи",
    "said_hint": "В расшифровке есть каждое из этих слов, в любой форме",
    "online": "В сети",
    "offline": "НЕ В СЕТИ",
    "last_seen": "Последний сигнал",
    "version": "Версия",
    "outbox": "Очередь",
    "free_disk": "Свободно",
    "no_rows": "Пока ничего нет.",
    "timezone": "Часовой пояс",
}

_TEXTS: Final = {"en": _EN, "ru": _RU}


def texts(lang: str) -> dict[str, str]:
    return _TEXTS.get(lang, _EN)


def pick_lang(asked: str | None, cookie: str | None, accept_language: str) -> str:
    for choice in (asked, cookie):
        if choice in LANGS:
            return str(choice)
    ranked = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()[:2]))
    for _, _, tag in sorted(ranked):
        if tag in LANGS:
            return tag
    return "en"
