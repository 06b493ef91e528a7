variable "topic_name" {
  description = "The SNS topic the relays publish to: `[events] topic` (default `cloudsec-events`, mesh/bus/src/config.rs). The FIFO topic is the same name with `.fifo`."
  type        = string
  default     = "cloudsec-events"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,251}$", var.topic_name))
    error_message = "topic_name must be 1 to 251 characters of A-Z, a-z, 0-9, '_' and '-' (without .fifo; the FIFO topic adds it)."
  }
}

variable "fifo_topic" {
  description = "Also create the FIFO topic `<topic_name>.fifo` (in-order delivery per aggregate, `[events] topic = \"<topic_name>.fifo\"`) for FIFO subscribers."
  type        = bool
  default     = true
}

variable "event_bus_name" {
  description = "The EventBridge bus: `[events] event_bus` (default `cloudsec-events`)."
  type        = string
  default     = "cloudsec-events"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,256}$", var.event_bus_name)) && var.event_bus_name != "default"
    error_message = "event_bus_name must be a custom bus name of A-Z, a-z, 0-9, '.', '_' and '-' (not the account's `default` bus)."
  }
}

variable "archive_retention_days" {
  description = "Days the EventBridge archive of the bus keeps events for replay (0 keeps them forever)."
  type        = number
  default     = 7

  validation {
    condition     = var.archive_retention_days >= 0 && floor(var.archive_retention_days) == var.archive_retention_days
    error_message = "archive_retention_days must be a whole number of days, 0 or more."
  }
}

variable "subscribers" {
  description = "One entry per subscriber, as its QueueSpec (mesh/bus/src/transport/mod.rs): the queue's name, the event types it receives (empty = all), receives before the dead-letter queue, visibility timeout and FIFO. The DLQ is `<queue>-dlq` (`<queue>-dlq.fifo`), the rule `cloudsec-<queue without .fifo>`."
  type = map(object({
    queue                      = string
    event_types                = optional(list(string), [])
    max_receives               = optional(number, 5)
    visibility_timeout_seconds = optional(number, 30)
    fifo                       = optional(bool, false)
    message_retention_seconds  = optional(number, 345600)
  }))

  validation {
    condition     = alltrue([for s in values(var.subscribers) : can(regex("^[A-Za-z0-9_-]+(\\.fifo)?$", s.queue)) && length(s.queue) <= 76])
    error_message = "queue names are A-Z, a-z, 0-9, '_' and '-' (plus .fifo), at most 76 characters so that the `-dlq` name fits SQS's 80."
  }

  validation {
    condition     = alltrue([for s in values(var.subscribers) : s.fifo == endswith(s.queue, ".fifo")])
    error_message = "a FIFO queue's name ends in .fifo, and only a FIFO queue's does (check_fifo_name in the bus)."
  }

  validation {
    condition     = alltrue([for s in values(var.subscribers) : s.max_receives >= 1 && s.max_receives <= 1000])
    error_message = "max_receives must be 1 to 1000 (SQS maxReceiveCount)."
  }

  validation {
    condition     = alltrue([for s in values(var.subscribers) : s.visibility_timeout_seconds >= 0 && s.visibility_timeout_seconds <= 43200])
    error_message = "visibility_timeout_seconds must be 0 to 43200 (12 hours)."
  }

  validation {
    condition     = alltrue([for s in values(var.subscribers) : s.message_retention_seconds >= 60 && s.message_retention_seconds <= 1209600])
    error_message = "message_retention_seconds must be 60 to 1209600 (14 days)."
  }

  validation {
    condition     = length(distinct([for s in values(var.subscribers) : s.queue])) == length(var.subscribers)
    error_message = "two subscribers cannot share a queue."
  }

  validation {
    condition     = !(var.fifo_topic == false && anytrue([for s in values(var.subscribers) : s.fifo]))
    error_message = "FIFO subscribers need fifo_topic = true."
  }
}

variable "kms_key_arn" {
  description = "The events key (module security, kms_key_arns.events): SSE for the topics and every queue."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
