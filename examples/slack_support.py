from flowops import trigger, ai, memory, slack

@trigger(integration="slack", event="message", options={"channel": "#support"})
def run(context):
    # LLM figures out the intent
    intent = ai.classify(
        text=context.message.text, 
        labels=["question", "feedback", "complaint"]
    )

    # Save the conversation in the agent’s memory
    memory.store(
        table="messages", 
        workflow_id=context.workflow_id, 
        data={"type": intent, "content": context.message.text}
    )
    slack.reply(context.message.channel, f"Thanks for your {intent}! Let me help.")
